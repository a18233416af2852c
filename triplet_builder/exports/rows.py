"""Reading the kept rows of a build folder for an export: only the columns an export needs, row group by
row group, with the chip image as the RGB PNG a VLM trainer reads (schemas/codec.py) and the anchors
de-quantized (schemas/aef.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from schemas import AEF_DIM
from schemas.aef import dequantize
from schemas.codec import PNG_COMPRESS_LEVEL, to_rgb

COLUMNS = (
    "chip_id",
    "split",
    "image",
    "width",
    "height",
    "messages",
    "qa",
    "aef_codes",
    "aef_valid",
    "aef_positions",
)


@dataclass
class ExportRow:
    chip_id: str
    split: str
    png: bytes  # the chip as stored (LA / RGBA with the valid mask as alpha)
    width: int
    height: int
    messages: list[dict[str, str]]
    qa: list[dict[str, str]]
    features: np.ndarray  # (S, 64) float32, zeros where invalid (the release's convention)
    positions: np.ndarray  # (S, 2) float32 normalized (y, x)
    valid: np.ndarray  # (S,) bool

    def rgb_png(self) -> bytes:
        """The chip as an 8-bit RGB PNG (alpha dropped, one band replicated), as trainers read it."""
        with Image.open(io.BytesIO(self.png)) as im:
            im.load()
            rgb = to_rgb(im)
        buf = io.BytesIO()
        rgb.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buf.getvalue()


def shard_files(output_dir: Path) -> list[Path]:
    """The data shards the build's manifest lists (never stray files), in order."""
    manifest = output_dir / "manifest.json"
    if not manifest.is_file():
        raise ValueError(f"{output_dir}: no manifest.json; export a folder written by `build`")
    m: dict[str, Any] = json.loads(manifest.read_text())
    files = [output_dir / f for f in m.get("files", []) if str(f).startswith("data/")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{output_dir}: shard(s) listed in the manifest are missing: {missing[:3]}; rebuild")
    return files


def iter_rows(output_dir: str | Path, *, split: str | None = None) -> Iterator[ExportRow]:
    """The kept rows of a build folder, in shard order (of `split` only, when given)."""
    out = Path(output_dir)
    for path in shard_files(out):
        f = pq.ParquetFile(path)
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=list(COLUMNS))
            for r in t.to_pylist():
                if split is not None and r["split"] != split:
                    continue
                codes = np.asarray(r["aef_codes"], dtype=np.int8).reshape(-1, AEF_DIM)
                valid = np.asarray(r["aef_valid"], dtype=bool)
                feats = np.where(valid[:, None], dequantize(codes), 0.0).astype(np.float32)
                yield ExportRow(
                    chip_id=r["chip_id"],
                    split=r["split"],
                    png=r["image"]["bytes"],
                    width=int(r["width"]),
                    height=int(r["height"]),
                    messages=r["messages"],
                    qa=r["qa"],
                    features=feats,
                    positions=np.asarray(r["aef_positions"], dtype=np.float32).reshape(-1, 2),
                    valid=valid,
                )
