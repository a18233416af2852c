"""The release reader honours what the FUSAR-GPT release's files state: `coordinate_size`, a UTF-8 BOM,
`*_no_aef` records and `.npy` anchors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model.release import ReleaseDataset, read_release_anchors
from tests.model.data_fixtures import write_release


def _rewrite(path: Path, edit, *, bom: bool = False) -> None:  # type: ignore[no-untyped-def]
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    text = "".join(json.dumps(edit(r)) + "\n" for r in recs)
    path.write_bytes(("\ufeff" + text).encode("utf-8") if bom else text.encode("utf-8"))


def test_coordinate_size_is_the_frame_of_the_boxes(tmp_path: Path) -> None:
    path, _ = write_release(tmp_path, n=1, size=100)
    # the box [10, 20, 30, 40] is in a 504 frame, not in the 100 px image: on a 56 px resize it is
    # [10, 20, 30, 40] * 56 / 504 -> enclosing integers [1, 2, 4, 5]
    _rewrite(path, lambda r: {**r, "coordinate_size": 504})
    (s,) = list(ReleaseDataset(path, image_size=56))
    assert json.loads(s.messages[1]["content"]) == [{"bbox_2d": [1, 2, 4, 5], "label": "plane"}]
    # without it the box is in image pixels: * 56 / 100 -> [5, 11, 17, 23]
    _rewrite(path, lambda r: {k: v for k, v in r.items() if k != "coordinate_size"})
    (s,) = list(ReleaseDataset(path, image_size=56))
    assert json.loads(s.messages[1]["content"]) == [{"bbox_2d": [5, 11, 17, 23], "label": "plane"}]


def test_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path, _ = write_release(tmp_path, n=2)
    _rewrite(path, lambda r: r, bom=True)
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert [s.id for s in ReleaseDataset(path, image_size=28)] == ["img0", "img1"]


def test_no_aef_records_have_no_anchors(tmp_path: Path) -> None:
    path, _ = write_release(tmp_path, n=2)
    no_aef = path.with_name("release_no_aef.jsonl")
    path.rename(no_aef)
    _rewrite(no_aef, lambda r: {k: v for k, v in r.items() if k != "aef"})
    samples = list(ReleaseDataset(no_aef, image_size=28))
    assert [s.features.shape for s in samples] == [(0, 64), (0, 64)]
    assert all(s.positions.shape == (0, 2) and s.valid.shape == (0,) for s in samples)


def test_npy_anchors_equal_the_npz_wide_layout(tmp_path: Path) -> None:
    path, truth = write_release(tmp_path, n=1, size=90, layout="wide")
    npz = tmp_path / "aef" / "img0.npz"
    with np.load(npz) as z:
        (wide,) = [z[k] for k in z.files]
    np.save(tmp_path / "aef" / "img0.npy", wide)
    f1, p1 = read_release_anchors(npz, (90, 90))
    f2, p2 = read_release_anchors(tmp_path / "aef" / "img0.npy", (90, 90))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(f2, truth[0]["features"], atol=1e-6)
    _rewrite(path, lambda r: {**r, "aef": "aef/img0.npy"})
    (s,) = list(ReleaseDataset(path, image_size=28))
    np.testing.assert_allclose(s.positions, truth[0]["positions"], atol=1e-6)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "release.jsonl:1: not JSON"),
        ('{"id": "a", "image": "x.png", "question": "q"}', "release.jsonl:1: missing field(s) ['answer']"),
        (
            '{"id": "a", "image": "x.png", "question": "q", "answer": "1", "coordinate_size": "504"}',
            "release.jsonl:1: coordinate_size must be a positive integer",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "release.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        ReleaseDataset(p)
