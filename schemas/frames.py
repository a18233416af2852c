"""Boxes and 3 x 3 grid cells: the one convention shared by the builder, the trainer and the exports.

The stored truth of a box is NORMALIZED: [x1, y1, x2, y2] in [0, 1] of the chip image (x right, y down,
x2 / y2 the far edges), so it is the same box at any image size. A box is written in a named pixel
frame (width x height) only at the edges (QA text, the trainer's resized image), with `box_to_frame`;
`box_from_frame` goes back.

Cells are the FUSAR-GPT 3 x 3 grid numbered 1..9 row-major from the top-left, cut at 1/3 and 2/3 of
the image in normalized coordinates (never at integer pixels, so a point keeps its cell after any
resize). A point exactly on a border belongs to the cell below / to the right of it (floor); 1.0 belongs
to the last cell; positions outside [0, 1] are clamped to the nearest cell. The cell of a box is the cell
of its centre.

The QA frame: every box in the generated QA text (detection answers, classification questions) is in
pixel coordinates of the CHIP image as stored (`qa_frame(width, height)`, the row's width x height), and
every such question says so (`Frame.phrase`, e.g. "pixel coordinates of the 64 x 64 image"). A reader
who resizes the image (the paper's 504 x 504, `PAPER_FRAME`) converts with `rescale_box`, as the
trainer does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_EPS = 1e-6  # float slack (pixels) when a frame coordinate is an integer in exact arithmetic


@dataclass(frozen=True)
class Frame:
    """A pixel frame: boxes written in it are [x1, y1, x2, y2] in pixels of a width x height image."""

    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Frame: width and height must be >= 1, got {self.width} x {self.height}")

    @property
    def phrase(self) -> str:
        """How a question names the frame, e.g. 'pixel coordinates of the 504 x 504 image'."""
        return f"pixel coordinates of the {self.width} x {self.height} image"


PAPER_FRAME = Frame(504, 504)  # the paper's input size (Qwen2.5-VL: 36 x 36 patches of 14 px)


def qa_frame(width: int, height: int) -> Frame:
    """The frame of the boxes in a chip's QA text: the chip image's own pixels."""
    return Frame(int(width), int(height))


# how a text names a frame: "64 x 64 image", "504x504 pixel image", "64 by 48 px image"
FRAME_RE = re.compile(
    r"\b(?P<w>\d+)\s*(?:x|×|by)\s*(?P<h>\d+)(?:\s*(?:-?\s*pixels?|px))?\s+image\b", re.IGNORECASE
)


def stated_frame(text: str) -> Frame | None:
    """The first frame a text names ("... of the 64 x 64 image"), or None."""
    m = FRAME_RE.search(text)
    return Frame(int(m.group("w")), int(m.group("h"))) if m else None


def restate_frame(text: str, frame: Frame) -> str:
    """The text with every frame it names replaced by `frame` (after its boxes were rescaled to it)."""
    return FRAME_RE.sub(f"{frame.width} x {frame.height} image", text)


def box_to_norm(box: Sequence[float], width: float, height: float) -> list[float]:
    """A box in pixels of a width x height image -> normalized [x1, y1, x2, y2] (not clipped)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def box_to_frame(box_norm: Sequence[float], width: int, height: int) -> list[int]:
    """A normalized box -> integer pixels of a width x height frame, enclosing the box (x1, y1 floored,
    x2, y2 ceiled, so the target stays inside) and clipped to the frame."""
    x1, y1, x2, y2 = (float(v) for v in box_norm)
    out = [
        math.floor(x1 * width + _EPS),
        math.floor(y1 * height + _EPS),
        math.ceil(x2 * width - _EPS),
        math.ceil(y2 * height - _EPS),
    ]
    lim = (width, height, width, height)
    return [int(min(max(v, 0), m)) for v, m in zip(out, lim, strict=True)]


def box_from_frame(box: Sequence[float], frame: Frame) -> list[float]:
    """A box written in `frame` pixels -> normalized [x1, y1, x2, y2]."""
    return box_to_norm(box, frame.width, frame.height)


def rescale_box(box: Sequence[float], src: Frame, dst: Frame) -> list[int]:
    """A box written in `src` pixels -> the same box in `dst` pixels (e.g. the QA frame -> a resized image)."""
    if src == dst:
        return [round(float(v)) for v in box]
    return box_to_frame(box_from_frame(box, src), dst.width, dst.height)


def _band(v: float) -> int:
    return min(max(math.floor(3.0 * v), 0), 2)


def cell_of(x_norm: float, y_norm: float) -> int:
    """Cell number (1..9) of a normalized position (x right, y down)."""
    return 3 * _band(y_norm) + _band(x_norm) + 1


def cell_of_box(box_norm: Sequence[float]) -> int:
    """Cell number (1..9) of the centre of a normalized box."""
    x1, y1, x2, y2 = (float(v) for v in box_norm)
    return cell_of((x1 + x2) / 2.0, (y1 + y2) / 2.0)


def cell_index_map(height: int, width: int) -> np.ndarray:
    """(H, W) int8 map of the cell number (1..9) of every pixel of a width x height image, by the
    normalized position of the pixel's centre."""
    rows = np.minimum(np.floor(3.0 * (np.arange(height) + 0.5) / height), 2).astype(np.int64)  # (H,)
    cols = np.minimum(np.floor(3.0 * (np.arange(width) + 0.5) / width), 2).astype(np.int64)  # (W,)
    return (3 * rows[:, None] + cols[None, :] + 1).astype(np.int8)


__all__ = [
    "FRAME_RE",
    "PAPER_FRAME",
    "Frame",
    "box_from_frame",
    "box_to_frame",
    "box_to_norm",
    "cell_index_map",
    "cell_of",
    "cell_of_box",
    "qa_frame",
    "rescale_box",
    "restate_frame",
    "stated_frame",
]


# == boxes written in text: rescaled with an image ===================================================
# A box written as text: "[x1, y1, x2, y2]" (classification questions name the box this way).
_BOX_TEXT_RE = re.compile(
    r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]"
)


def _scale_box(box: Sequence[float], sx: float, sy: float, width: int, height: int) -> list[int]:
    """A box of the original image -> the resized width x height image, by the one conversion of
    schemas/frames.py (normalized, then enclosing integer pixels clipped to the image)."""
    return box_to_frame(box_to_norm(box, width / sx, height / sy), width, height)


def rescale_detection_answer(answer: str, sx: float, sy: float, width: int, height: int) -> str:
    """Scale every bbox_2d of a detection answer (JSON list, or 'None') to the resized image, as integers
    clipped to it. The answer is re-serialised with json.dumps, the builder's own format."""
    if answer.strip() == "None" or (sx == 1.0 and sy == 1.0):
        return answer
    try:
        items = json.loads(answer)
    except json.JSONDecodeError as e:
        raise ValueError(f"detection answer is not JSON nor 'None' ({e}): {answer[:80]!r}") from None
    if not isinstance(items, list):
        raise ValueError(f"detection answer must be a JSON list, got {type(items).__name__}: {answer[:80]!r}")
    for it in items:
        if not isinstance(it, dict) or "bbox_2d" not in it:
            raise ValueError(f"detection answer item has no bbox_2d: {it!r}")
        it["bbox_2d"] = _scale_box(it["bbox_2d"], sx, sy, width, height)
    return json.dumps(items)


def rescale_boxes_in_text(text: str, sx: float, sy: float, width: int, height: int) -> str:
    """Scale every "[x1, y1, x2, y2]" box written in free text (classification questions) to the resized
    image, written back as integers."""
    if sx == 1.0 and sy == 1.0:
        return text

    def sub(m: re.Match[str]) -> str:
        box = _scale_box([float(g) for g in m.groups()], sx, sy, width, height)
        return "[" + ", ".join(str(v) for v in box) + "]"

    return _BOX_TEXT_RE.sub(sub, text)


def rescale_qa(
    task: str, question: str, answer: str, sx: float, sy: float, w: int, h: int
) -> tuple[str, str]:
    """The question and answer of one QA item with its boxes in the resized image's pixels, and the
    frame the question states ("... of the 64 x 64 image") restated as the resized image's."""
    if task == "detection":
        return restate_frame(question, Frame(w, h)), rescale_detection_answer(answer, sx, sy, w, h)
    if task == "classification":
        return restate_frame(rescale_boxes_in_text(question, sx, sy, w, h), Frame(w, h)), answer
    return question, answer
