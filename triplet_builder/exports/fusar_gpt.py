"""Export to the FUSAR-GPT release's format, so the authors' own trainer runs on our data.

    DEST/images/<chip_id>.png             the chip as 8-bit RGB (schemas/codec.py `to_rgb`)
    DEST/aef/<chip_id>.npz                features (S, 64) float32 (zeros where invalid), positions (S, 2)
    DEST/<task>_<split>.jsonl             id, image, aef, coordinate_size, question, answer
    DEST/<task>_<split>_no_aef.jsonl      the same without `aef` (the release's no-AlphaEarth variants)

One file per task (caption, counting, localization, detection, classification: the release trains one
adapter per task) and split. Boxes are written in the release's 504 x 504 frame (`coordinate_size`), and
the questions say so; ids are the chip id (caption) or `<chip_id>#<task>-<k>`, as the trainer's
ShardDataset names samples. `model.release.ReleaseDataset` reads the result back.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from schemas.frames import PAPER_FRAME, rescale_qa
from triplet_builder.exports.rows import ExportRow, iter_rows

COORDINATE_SIZE = PAPER_FRAME.width  # 504
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def check_dest(dest: Path) -> None:
    """An export never writes into a non-empty folder (it would mix two exports)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest}: exists and is not an empty folder; choose a new destination")


def safe_name(chip_id: str) -> str:
    """A chip id usable as a file name; anything else is refused (never a path outside DEST)."""
    if not _SAFE_ID.match(chip_id):
        raise ValueError(f"chip id {chip_id!r} is not a safe file name; the shards are not this project's")
    return chip_id


def row_records(row: ExportRow, image: str, aef: str) -> list[tuple[str, dict[str, Any]]]:
    """(task, JSONL record) of every text of one row, boxes in the 504 frame."""
    sx, sy = COORDINATE_SIZE / row.width, COORDINATE_SIZE / row.height
    base = {"image": image, "aef": aef, "coordinate_size": COORDINATE_SIZE}
    out = [("caption", {"id": row.chip_id, **base, "question": row.messages[0]["content"],
                        "answer": row.messages[1]["content"]})]  # fmt: skip
    seen: dict[str, int] = {}
    for item in row.qa:
        task = item["task"]
        k = seen.get(task, 0)
        seen[task] = k + 1
        q, a = rescale_qa(task, item["question"], item["answer"], sx, sy, COORDINATE_SIZE, COORDINATE_SIZE)
        out.append((task, {"id": f"{row.chip_id}#{task}-{k}", **base, "question": q, "answer": a}))
    return out


def export_fusar_gpt(output_dir: str | Path, dest: str | Path, *, split: str | None = None) -> dict[str, Any]:
    """Write the release layout of a build folder's kept rows to `dest`; returns records per file."""
    dest = Path(dest)
    check_dest(dest)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "aef").mkdir(exist_ok=True)
    files: dict[str, tuple[TextIO, TextIO]] = {}
    counts: dict[str, int] = {}
    chips = 0
    try:
        for row in iter_rows(output_dir, split=split):
            name = safe_name(row.chip_id)
            (dest / "images" / f"{name}.png").write_bytes(row.rgb_png())
            buf = io.BytesIO()
            np.savez(buf, features=row.features, positions=row.positions)
            (dest / "aef" / f"{name}.npz").write_bytes(buf.getvalue())
            chips += 1
            for task, rec in row_records(row, f"images/{name}.png", f"aef/{name}.npz"):
                key = f"{task}_{row.split}"
                if key not in files:
                    files[key] = (
                        open(dest / f"{key}.jsonl", "w", encoding="utf-8"),
                        open(dest / f"{key}_no_aef.jsonl", "w", encoding="utf-8"),
                    )
                with_aef, no_aef = files[key]
                with_aef.write(json.dumps(rec, ensure_ascii=False) + "\n")
                no_aef.write(
                    json.dumps({k: v for k, v in rec.items() if k != "aef"}, ensure_ascii=False) + "\n"
                )
                counts[f"{key}.jsonl"] = counts.get(f"{key}.jsonl", 0) + 1
    finally:
        for a, b in files.values():
            a.close()
            b.close()
    return {"format": "fusar-gpt", "chips": chips, "files": dict(sorted(counts.items()))}
