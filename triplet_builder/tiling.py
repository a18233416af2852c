"""Where, not what: chip windows as a pure function of scene size, chip size, stride and pixel sizes.

Windows are laid from the top-left corner every `stride` output pixels; a last row / column of windows
is added flush with the far edges so the whole scene is covered. With a target pixel size other than
the native one, a chip of `size` output pixels reads `size * target / native` native pixels.
"""

from __future__ import annotations

from triplet_builder.record import Window


class ChipTooLargeError(ValueError):
    pass


def _offsets(extent: int, size: int, step: int) -> list[int]:
    offs = list(range(0, extent - size + 1, step))
    if offs and offs[-1] + size < extent:
        offs.append(extent - size)
    return offs


def plan_windows(
    width: int,
    height: int,
    *,
    size: int,
    stride: int,
    native_pixel_m: float,
    target_pixel_m: float | None = None,
) -> list[Window]:
    """All chip windows of a scene, row-major. Raises ChipTooLargeError when no chip fits."""
    scale = 1.0 if target_pixel_m is None or native_pixel_m <= 0 else target_pixel_m / native_pixel_m
    native = max(1, round(size * scale))
    native_step = max(1, round(stride * scale))
    if native > width or native > height:
        raise ChipTooLargeError(
            f"chip.size {size} px ({native} native px) is larger than the scene ({width} x {height} px)"
        )
    return [
        Window(col, row, native, native, size, size)
        for row in _offsets(height, native, native_step)
        for col in _offsets(width, native, native_step)
    ]
