"""The FUSAR-GPT release's data format (github.com/kklvyyhadr/FUSAR-GPT, examples/): read as `Sample`s.

A JSONL file, one record per question: `id, image` (a path relative to the JSONL's folder), `aef` (an
anchors file: `.npz` or `.npy`), `coordinate_size` (the square frame the boxes are written in, 504 in the
release; absent: the image's own pixels), `question`, `answer`. The `*_no_aef.jsonl` variants have no
`aef` field: their samples carry no anchors (the TLM leaves them unmodulated). Files may start with a
UTF-8 byte-order mark. `triplet_builder.exports.fusar_gpt` writes this format from the shards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model.data import TASKS, Sample, resize_image
from schemas import AEF_DIM
from schemas.codec import to_rgb
from schemas.frames import rescale_qa

REQUIRED = ("id", "image", "question", "answer")

_TASK_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("detection", re.compile(r"bbox|bounding box|json|detect", re.I)),
    ("classification", re.compile(r"categor|classif|class|type of|which kind", re.I)),
    ("localization", re.compile(r"grid|cell|3\s*[x×]\s*3|locali[sz]|which (part|region)", re.I)),
    ("counting", re.compile(r"how many|number of|count", re.I)),
]


def guess_task(question: str) -> str:
    """The task of a release question from its wording (detection and classification name boxes, so they
    are tested first); a question matching none is a caption request."""
    for task, pattern in _TASK_PATTERNS:
        if pattern.search(question):
            return task
    return "caption"


def _wide(a: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An (S, 70) array = lon, lat, row, col, x, y, A00..A63 -> (features, positions (y, x) normalized)."""
    a = a.astype(np.float64)
    width, height = image_size
    pos = np.stack([(a[:, 2] + 0.5) / height, (a[:, 3] + 0.5) / width], axis=1)
    return a[:, 6:].astype(np.float32), np.clip(pos, 0.0, 1.0).astype(np.float32)


def read_release_anchors(path: Path, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(features (S, 64) float32, positions (S, 2) float32) from a release anchors file.

    Layouts: an `.npz` with {features (S, 64), positions (S, 2) normalized (y, x)} (the release); or one
    (S, 70) array (an `.npz` key or an `.npy` file) = lon, lat, row, col, x, y, A00..A63, where row / col
    are the anchor's pixel row / column in the image (centre at +0.5), so positions are
    ((row + 0.5) / height, (col + 0.5) / width), clipped to [0, 1].
    """
    if path.suffix.lower() == ".npy":
        a = np.load(path, allow_pickle=False)
        if a.ndim != 2 or a.shape[1] != 6 + AEF_DIM:
            raise ValueError(f"{path}: an .npy of anchors must be (S, {6 + AEF_DIM}), got {a.shape}")
        return _wide(a, image_size)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "features" in arrays and arrays["features"].ndim == 2 and arrays["features"].shape[1] == AEF_DIM:
        feats = arrays["features"].astype(np.float32)
        if "positions" not in arrays:
            raise ValueError(
                f"{path}: has features but no positions; expected positions (S, 2) normalized (y, x)"
            )
        pos = arrays["positions"].astype(np.float32).reshape(-1, 2)
        if len(pos) != len(feats):
            raise ValueError(f"{path}: {len(feats)} features but {len(pos)} positions")
        return feats, np.clip(pos, 0.0, 1.0)
    wide = [a for a in arrays.values() if a.ndim == 2 and a.shape[1] == 6 + AEF_DIM]
    if len(wide) != 1:
        raise ValueError(
            f"{path}: neither features (S, 64) + positions (S, 2) nor one (S, 70) array; keys {list(arrays)}"
        )
    return _wide(wide[0], image_size)


def read_release_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a release JSONL (a UTF-8 byte-order mark allowed), each checked for the fields a
    sample needs; an error names the file and line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg}); each line must be one JSON object") from None
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise ValueError(f"{path}:{n}: missing field(s) {missing}")
        cs = rec.get("coordinate_size")
        if cs is not None and not (isinstance(cs, int) and cs > 0):
            raise ValueError(f"{path}:{n}: coordinate_size must be a positive integer, got {cs!r}")
        out.append(rec)
    return out


class ReleaseDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """The release's JSONL + anchors as the same `Sample`s as ShardDataset.

    Boxes in answers / questions are read in the `coordinate_size` frame when a record states one, else in
    the pixels of the image file as stored, and are rescaled to the resized image. task: force one task for
    every line (the release's adapters are per task); None = guess it from the question. Lines are
    sharded over ranks x workers by index (i % consumers).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: int | tuple[int, int] = 504,
        task: str | None = None,
        split: str = "test",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if task is not None and task not in TASKS:
            raise ValueError(f"ReleaseDataset: task must be one of {TASKS}, got {task!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"release JSONL {self.path} does not exist")
        self.image_size, self.task, self.split = image_size, task, split
        self.rank, self.world_size = rank, world_size
        self.records = read_release_jsonl(self.path)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, rec: dict[str, Any]) -> Sample:
        """One JSONL record -> Sample."""
        root = self.path.parent
        with Image.open(root / rec["image"]) as im:
            im.load()
            original = im.size
            image, sx, sy = resize_image(to_rgb(im), self.image_size)
        if rec.get("aef"):
            feats, pos = read_release_anchors(root / rec["aef"], original)
            valid = np.isfinite(feats).all(-1) & (np.abs(feats).sum(-1) > 0)
            feats = np.where(valid[:, None], np.nan_to_num(feats), 0.0).astype(np.float32)
        else:  # a *_no_aef record: no anchors
            feats, pos = np.zeros((0, AEF_DIM), np.float32), np.zeros((0, 2), np.float32)
            valid = np.zeros(0, bool)
        cs = rec.get("coordinate_size")
        if cs is not None:  # boxes are in a cs x cs frame: scale from it, not from the file's pixels
            sx, sy = image.width / cs, image.height / cs
        task = self.task or guess_task(rec["question"])
        question, answer = str(rec["question"]), str(rec["answer"])
        question = question.replace("<image>", "").strip()
        question, answer = rescale_qa(task, question, answer, sx, sy, image.width, image.height)
        return Sample(
            id=str(rec["id"]),
            image=image,
            features=feats,
            positions=pos,
            valid=valid,
            messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            task=task,
            split=self.split,
        )

    def __iter__(self) -> Iterator[Sample]:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        consumers = self.world_size * num_workers
        consumer = self.rank * num_workers + worker
        for rec in self.records[consumer::consumers]:
            yield self.sample(rec)


__all__ = ["ReleaseDataset", "guess_task", "read_release_anchors", "read_release_jsonl"]
