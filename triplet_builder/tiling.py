"""Where, not what: chip windows as a pure function of scene size, chip size, stride and pixel sizes.

Windows are laid from the top-left corner every `stride` output pixels; a last row / column of windows
is added flush with the far edges so the whole scene is covered, unless it would share more than
`max_overlap` of its area with the window before it (a near duplicate): then it is not laid, and counted.
With a target pixel size other than the native one, a chip of `size` output pixels reads
`size * target / native` native pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from triplet_builder.record import Window


class ChipTooLargeError(ValueError):
    pass


@dataclass(frozen=True)
class WindowGrid:
    """The windows laid over a scene (row-major) and how many flush windows were near duplicates."""

    windows: list[Window]
    near_duplicates: int


def _offsets(extent: int, size: int, step: int, max_overlap: float) -> tuple[list[int], bool]:
    """Offsets along one axis, and whether a flush last offset was dropped as a near duplicate."""
    offs = list(range(0, extent - size + 1, step))
    if offs and offs[-1] + size < extent:
        shared = (offs[-1] + size - (extent - size)) / size  # of the flush window, with the one before
        if shared > max_overlap:
            return offs, True
        offs.append(extent - size)
    return offs, False


def lay_windows(
    width: int,
    height: int,
    *,
    size: int,
    stride: int,
    native_pixel_m: float,
    target_pixel_m: float | None = None,
    max_overlap: float = 1.0,
) -> WindowGrid:
    """All chip windows of a scene, row-major, no two sharing more than `max_overlap` of a chip's area.
    The native step is the stride's, raised by the pixel rounding may cost when the stride is right at
    `max_overlap`. Raises ChipTooLargeError when no chip fits."""
    scale = 1.0 if target_pixel_m is None or native_pixel_m <= 0 else target_pixel_m / native_pixel_m
    native = max(1, round(size * scale))
    native_step = max(1, round(stride * scale), math.ceil(native * (1.0 - max_overlap) - 1e-9))
    if native > width or native > height:
        raise ChipTooLargeError(
            f"chip.size {size} px ({native} native px) is larger than the scene ({width} x {height} px)"
        )
    cols, col_dropped = _offsets(width, native, native_step, max_overlap)
    rows, row_dropped = _offsets(height, native, native_step, max_overlap)
    windows = [Window(col, row, native, native, size, size) for row in rows for col in cols]
    full = (len(cols) + col_dropped) * (len(rows) + row_dropped)
    return WindowGrid(windows, full - len(windows))


def plan_windows(
    width: int,
    height: int,
    *,
    size: int,
    stride: int,
    native_pixel_m: float,
    target_pixel_m: float | None = None,
    max_overlap: float = 1.0,
) -> list[Window]:
    """All chip windows of a scene, row-major (see `lay_windows`)."""
    return lay_windows(
        width,
        height,
        size=size,
        stride=stride,
        native_pixel_m=native_pixel_m,
        target_pixel_m=target_pixel_m,
        max_overlap=max_overlap,
    ).windows
