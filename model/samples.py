"""The `Sample` every reader of the trainer yields, and how one row of a triplet shard becomes samples.

A kept shard row is first held as a light record (`_Row`: chip id, PNG bytes, AlphaEarth codes, positions and
the texts the stage uses), and one sample of it as a `_Spec` (the row and which of its texts): no image is
decoded before the sample is yielded, so the shuffle buffer and a resume's skipped samples cost no decoding.
`materialise` then decodes and resizes the image, rescales the boxes of the text with it and de-quantizes the
anchors. Split from the shard reader (model/data.py), which deals the rows out and re-exports `Sample`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from model.images import _decode_png
from model.shard_files import _arrow_rows_1d, _arrow_rows_2d
from schemas import AEF_DIM
from schemas.aef import dequantize
from schemas.frames import rescale_qa


@dataclass
class Sample:
    """One training / evaluation example: an image, its AlphaEarth anchors and a user/assistant chat."""

    id: str  # chip_id, plus "#<task>-<k>" for a QA sample (k = index among the chip's items of that task)
    image: Image.Image  # RGB, already resized by the reader (see resize_image)
    features: np.ndarray  # (S, 64) float32, de-quantized; zeros where invalid
    positions: np.ndarray  # (S, 2) float32, normalized image-local (y, x) in [0, 1]
    valid: np.ndarray  # (S,) bool
    messages: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}], user first
    task: str  # "caption" | "counting" | "localization" | "detection" | "classification"
    split: str


@dataclass
class _Row:
    """What one kept chip row needs to become samples (no decoded image yet: decoding happens on yield)."""

    chip_id: str
    split: str
    png: bytes
    codes: np.ndarray  # (S, 64) int8
    valid: np.ndarray  # (S,) bool
    positions: np.ndarray  # (S, 2) float32
    texts: list[tuple[str, str, str, int]] = field(default_factory=list)  # (task, question, answer, k)


@dataclass
class _Spec:
    """One sample before materialisation: a row and which of its texts."""

    row: _Row
    index: int


def row_texts(
    stage: str, tasks: Sequence[str], path: Path, chip_id: str, value: list[dict[str, str]]
) -> list[tuple[str, str, str, int]]:
    """(task, question, answer, k) of one row: its caption turn pair (stage caption), or its QA items of
    `tasks` (stage qa; k = index among the chip's items of that task)."""
    if stage == "caption":
        if len(value) < 2 or value[0]["role"] != "user" or value[1]["role"] != "assistant":
            raise ValueError(f"{path}: chip {chip_id} messages do not start with a user/assistant pair")
        return [("caption", value[0]["content"], value[1]["content"], 0)]
    seen: dict[str, int] = {}
    out = []
    for item in value:
        k = seen.get(item["task"], 0)
        seen[item["task"]] = k + 1
        if item["task"] in tasks:
            out.append((item["task"], item["question"], item["answer"], k))
    return out


def table_rows(table: pa.Table, path: Path, stage: str, tasks: Sequence[str]) -> Iterator[_Row]:
    """The rows of one row group's table (of `path`) that hold a text of the stage, as light records.

    The caller passes the table without keeping a name for it: it is dropped here once its columns are
    extracted, so only the kept rows stay alive."""
    if not table.num_rows:
        return
    codes = _arrow_rows_2d(table.column("aef_codes"), np.dtype(np.int8), AEF_DIM)
    positions = _arrow_rows_2d(table.column("aef_positions"), np.dtype(np.float32), 2)
    valid = _arrow_rows_1d(table.column("aef_valid"), np.dtype(bool))
    text_col = table.column("messages" if stage == "caption" else "qa").to_pylist()
    ids, splits = table.column("chip_id").to_pylist(), table.column("split").to_pylist()
    images = table.column("image").combine_chunks().field("bytes").to_pylist()
    del table  # only this row group's kept rows stay alive, as light per-row records
    for i, chip_id in enumerate(ids):
        if images[i] is None:
            raise ValueError(f"{path}: chip {chip_id} has no image bytes; rebuild the shard")
        texts = row_texts(stage, tasks, path, chip_id, text_col[i])
        if texts:
            # copies, not views: a row kept in the shuffle buffer must not pin its row group's arrays
            yield _Row(
                chip_id,
                splits[i],
                images[i],
                codes[i].copy(),
                valid[i].copy(),
                positions[i].copy(),
                texts,
            )


def materialise(spec: _Spec, image_size: int | tuple[int, int]) -> Sample:
    """The sample: its image decoded and resized, the text's boxes rescaled with it, the anchors de-quantized
    (zeros where invalid)."""
    row = spec.row
    task, question, answer, k = row.texts[spec.index]
    image, sx, sy = _decode_png(row.png, image_size)
    question, answer = rescale_qa(task, question, answer, sx, sy, image.width, image.height)
    valid = np.asarray(row.valid, dtype=bool) & ~(row.codes == -128).any(-1)
    features = dequantize(row.codes)  # (S, 64)
    features[~valid] = 0.0
    return Sample(
        id=row.chip_id if task == "caption" else f"{row.chip_id}#{task}-{k}",
        image=image,
        features=features,
        positions=np.clip(np.asarray(row.positions, dtype=np.float32), 0.0, 1.0),
        valid=valid,
        messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        task=task,
        split=row.split,
    )
