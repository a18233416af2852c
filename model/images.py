"""Image preparation for the trainer's readers: resize a chip to the base's patch grid and report the scales.

Every reader (the shards in model/data.py, the release's JSONL in model/release.py, `predict`) hands the base
images whose sides are multiples of its patch grid (28 px for Qwen2.5-VL: patch 14 x merge 2), so that the
processor never resizes again behind our back; the x / y scales returned with the image let the boxes of
the sample's text follow it exactly. Split from the shard reader (model/data.py), which re-exports
`resize_image`.
"""

from __future__ import annotations

import io

from PIL import Image

from schemas.codec import to_rgb


def _round_to_multiple(n: int, multiple: int) -> int:
    return max(multiple, round(n / multiple) * multiple)


def resize_image(
    image: Image.Image, size: int | tuple[int, int], multiple: int = 28
) -> tuple[Image.Image, float, float]:
    """Resize to the base's patch grid; return (image, x scale, y scale) so boxes can follow the image.

    size: an int for a square image (the paper: 504), or (width, height) in PIL order. Each side is rounded
    to the nearest multiple of `multiple` (28 = Qwen2.5-VL's patch 14 x merge 2) so the processor does not
    resize again behind our back and the boxes stay exact.
    """
    if multiple < 1:
        raise ValueError(f"resize_image: multiple must be >= 1, got {multiple}")
    w, h = (size, size) if isinstance(size, int) else size
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: size must be positive, got {size}")
    w, h = _round_to_multiple(w, multiple), _round_to_multiple(h, multiple)
    sx, sy = w / image.width, h / image.height
    if (w, h) == image.size:
        return image, 1.0, 1.0
    return image.resize((w, h), Image.Resampling.BICUBIC), sx, sy


def _decode_png(data: bytes, size: int | tuple[int, int]) -> tuple[Image.Image, float, float]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = to_rgb(im)
    return resize_image(rgb, size)
