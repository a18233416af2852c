"""schemas/frames.py: normalized boxes, the 3 x 3 cells and the QA frame survive any resize."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.frames import (
    PAPER_FRAME,
    Frame,
    box_from_frame,
    box_to_frame,
    box_to_norm,
    cell_index_map,
    cell_of,
    cell_of_box,
    qa_frame,
    rescale_box,
)


def _cell_at_size(box_px: list[int], chip: int, size: int) -> int:
    """Independent reference: resize the chip to size x size, take the box centre there and cut the
    resized image in three equal bands (what a reader of the resized image sees)."""
    s = size / chip
    xc, yc = (box_px[0] + box_px[2]) / 2 * s, (box_px[1] + box_px[3]) / 2 * s
    col, row = min(int(xc // (size / 3)), 2), min(int(yc // (size / 3)), 2)
    return 3 * row + col + 1


def test_cell_of_border_and_clamping() -> None:
    assert cell_of(0.0, 0.0) == 1 and cell_of(1.0, 1.0) == 9
    assert cell_of(1 / 3, 0.1) == 2  # exactly on a border: the cell to the right
    assert cell_of(0.1, 2 / 3) == 7  # exactly on a border: the cell below
    assert cell_of(-0.5, 1.5) == 7  # outside: clamped


def test_detection_near_a_border_keeps_its_cell_after_resize_64_to_504() -> None:
    # a 2-px target whose centre (21.0 px) is left of 64 / 3 = 21.33 px: cell 1 at 64 px and at 504 px.
    # The old integer edges (21 / 42 px) put it in cell 2 at 64 px, cell 1 after the resize.
    box = [20, 5, 22, 7]
    norm = box_to_norm(box, 64, 64)
    assert cell_of_box(norm) == _cell_at_size(box, 64, 504) == _cell_at_size(box, 64, 64) == 1
    # every 1- and 2-px box of a 64 px chip: the cell is the same at 64, 504 and 448 px
    for x1 in range(64):
        for wd in (1, 2, 3):
            if x1 + wd > 64:
                continue
            b = [x1, 30, x1 + wd, 31]
            c = cell_of_box(box_to_norm(b, 64, 64))
            assert c == _cell_at_size(b, 64, 504) == _cell_at_size(b, 64, 448), b
            # and the box written in the QA frame has its centre in the same cell of that frame
            f = box_to_frame(box_to_norm(b, 64, 64), PAPER_FRAME.width, PAPER_FRAME.height)
            assert cell_of_box(box_from_frame(f, PAPER_FRAME)) == c, (b, f)


def test_cell_index_map_matches_cell_of_at_pixel_centres() -> None:
    for h, w in [(64, 64), (10, 11), (4, 5)]:
        cmap = cell_index_map(h, w)
        for y in range(h):
            for x in range(w):
                assert cmap[y, x] == cell_of((x + 0.5) / w, (y + 0.5) / h)
        assert set(np.unique(cmap)) == set(range(1, 10))


def test_box_to_frame_encloses_and_round_trips() -> None:
    box = [20, 30, 22, 31]
    f = box_to_frame(box_to_norm(box, 64, 64), 504, 504)
    # enclosing: the scaled box (157.5, 236.25, 173.25, 244.125) lies inside the integer box
    assert f == [157, 236, 174, 245]
    assert rescale_box(f, PAPER_FRAME, PAPER_FRAME) == f
    assert rescale_box([0, 0, 504, 504], PAPER_FRAME, Frame(448, 448)) == [0, 0, 448, 448]
    # integer boxes of a frame come back exactly from normalized coordinates
    for b in ([0, 0, 1, 1], [1, 2, 63, 64], [21, 42, 43, 44]):
        assert box_to_frame(box_to_norm(b, 64, 64), 64, 64) == b
    assert box_to_frame([-0.1, 0.5, 1.2, 0.6], 100, 100) == [0, 50, 100, 60]  # clipped


def test_frame_phrase_and_validation() -> None:
    assert PAPER_FRAME.phrase == "pixel coordinates of the 504 x 504 image"
    assert qa_frame(64, 48).phrase == "pixel coordinates of the 64 x 48 image"
    # a chip box written in the chip's frame, read back and rescaled to the paper's frame
    assert rescale_box([20, 30, 22, 31], qa_frame(64, 64), PAPER_FRAME) == [157, 236, 174, 245]
    with pytest.raises(ValueError, match="width and height"):
        Frame(0, 10)
