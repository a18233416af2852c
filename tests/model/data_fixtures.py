"""Helpers that write small triplet shards and FUSAR-GPT release files into temporary folders for the reader
tests: rows follow schemas.triplet exactly (the writer is given the schema, never infers it), with controlled
row-group sizes and splits, seeded-synthetic images and either synthetic or REAL AlphaEarth codes."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas import CAPTION_FIELDS, triplet_schema
from schemas.aef import quantize

ROOT = Path(__file__).resolve().parents[2]
AEF_WINDOW = (
    ROOT / "tests" / "data" / "real" / "alphaearth_geotiff" / "aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"
)
DEMO_REGION = ROOT / "pipelines" / "regions" / "demo.yaml"

CAPTION_Q = "Describe this SAR image."


def real_aef_codes() -> np.ndarray:
    """The REAL AlphaEarth window's int8 codes as (100, 64): one 64-d code vector per 10 m pixel."""
    import rasterio

    with rasterio.open(AEF_WINDOW) as src:
        codes = src.read()  # (64, 10, 10) int8
    return np.ascontiguousarray(codes.reshape(64, -1).T)


def png_bytes(width: int, height: int, seed: int, mode: str = "LA") -> bytes:
    """A seeded-noise PNG with the chips' layout: L or RGB colour plus an alpha channel (the valid mask)."""
    rng = np.random.default_rng(seed)
    bands = 2 if mode == "LA" else 4
    arr = rng.integers(0, 256, size=(height, width, bands), dtype=np.uint8)
    arr[..., -1] = 255
    arr[: height // 4, : width // 4, -1] = 0  # an invalid corner in the mask
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_codes(n: int, seed: int, invalid: Sequence[int] = ()) -> np.ndarray:
    """(n, 64) int8 codes of random unit vectors, -128 at the `invalid` anchors."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 64))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    valid = np.ones(n, dtype=bool)
    valid[list(invalid)] = False
    return quantize(v, valid)


def make_row(
    chip_id: str,
    split: str = "train",
    *,
    size: int = 64,
    grid: int = 4,
    codes: np.ndarray | None = None,
    qa: list[dict[str, str]] | None = None,
    seed: int = 0,
    mode: str = "LA",
) -> dict[str, Any]:
    """One row of every column of schemas.triplet (values plausible, not geographically meaningful)."""
    s = grid * grid
    if codes is None:
        codes = synthetic_codes(s, seed, invalid=[s - 1])
    if len(codes) != s:
        raise ValueError(f"make_row: {len(codes)} code vectors for a {grid} x {grid} grid")
    valid = ~(codes == -128).any(1)
    centres = (np.arange(grid) + 0.5) / grid
    positions = [[float(y), float(x)] for y in centres for x in centres]
    qa = qa if qa is not None else default_qa(size)
    caption = f"Chip {chip_id}: a flat area with a bright target."
    messages = [{"role": "user", "content": CAPTION_Q}, {"role": "assistant", "content": caption}]
    for item in qa:
        messages += [
            {"role": "user", "content": item["question"]},
            {"role": "assistant", "content": item["answer"]},
        ]
    return {
        "chip_id": chip_id,
        "split": split,
        "image": {"bytes": png_bytes(size, size, seed, mode), "path": f"{chip_id}.png"},
        "channels": ["VV"] if mode == "LA" else ["VV", "VH", "VV-VH"],
        "stretch_min_db": [-25.0],
        "stretch_max_db": [5.0],
        "width": size,
        "height": size,
        "pixel_size_m": 20.0,
        "valid_fraction": 0.9375,
        "scene_id": "scene",
        "source_uris": ["scene.tif"],
        "sensor": "Sentinel-1A",
        "mode": "IW",
        "orbit_direction": "descending",
        "polarisations": ["VV"],
        "acquired": datetime(2017, 12, 10, tzinfo=timezone.utc),
        "year": 2017,
        "backscatter": "sigma0",
        "source_scale": "db",
        "window": {"col_off": 0, "row_off": 0, "width": size, "height": size},
        "georef_kind": "affine",
        "native_crs": "EPSG:32631",
        "native_transform": [20.0, 0.0, 0.0, 0.0, -20.0, 0.0],
        "centre_lon": 4.8,
        "centre_lat": 43.4,
        "grid_cell": "485U_36R",
        "utm_crs": "EPSG:32631",
        "geometry": b"\x01",
        "bbox": {"xmin": 4.79, "ymin": 43.39, "xmax": 4.81, "ymax": 43.41},
        "facts": "{}",
        "caption": caption,
        "caption_fields": {f: (caption if f == "terrain" else None) for f in CAPTION_FIELDS},
        "qa": qa,
        "messages": messages,
        "text_generator": "test/1.0",
        "prompt_version": "test/1.0",
        "aef_codes": codes.tolist(),
        "aef_valid": valid.tolist(),
        "aef_positions": positions,
        "aef_lonlat": [[4.8, 43.4]] * s,
        "aef_grid": grid,
        "aef_year": 2017,
        "aef_source": "test",
        "aef_synthetic": True,
        "pipeline_version": "0.1.0",
        "config_hash": "0" * 16,
    }


def default_qa(size: int) -> list[dict[str, str]]:
    """One QA item of every task, with a box scaled to the chip (a quarter of the way in)."""
    q = size // 4
    box = [q, q, q + 4, q + 6]
    det = json.dumps([{"bbox_2d": box, "label": "ship"}])
    return [
        {"task": "counting", "question": "How many ships are in the image?", "answer": "1"},
        {"task": "localization", "question": "Which of the 3 x 3 grid cells contain ships?", "answer": "1"},
        {"task": "detection", "question": "Detect all ships as JSON.", "answer": det},
        {
            "task": "classification",
            "question": f"What is the category of the object in the box [{box[0]}, {box[1]}, {box[2]}, {box[3]}]?",
            "answer": "ship",
        },
    ]


def write_shard(path: Path, rows: list[dict[str, Any]], row_group_rows: int) -> Path:
    """Write rows with the declared triplet schema, in row groups of row_group_rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=triplet_schema())
    pq.write_table(table, path, row_group_size=row_group_rows)
    return path


def write_dataset(
    root: Path,
    splits: Sequence[str],
    *,
    row_group_rows: int = 4,
    rows_per_file: int = 12,
    **row_kwargs: Any,
) -> Path:
    """A dataset folder root/data/part-XXX.parquet holding one row per entry of `splits` (in that order, so
    splits may mix inside a row group), plus a rejects/ file the reader must ignore. Returns root."""
    rows = [make_row(f"chip{i:04d}", s, seed=i, **row_kwargs) for i, s in enumerate(splits)]
    for k in range(0, len(rows), rows_per_file):
        write_shard(
            root / "data" / f"part-{k // rows_per_file:03d}.parquet",
            rows[k : k + rows_per_file],
            row_group_rows,
        )
    rejects = root / "rejects" / "rejects-00000.parquet"
    rejects.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"chip_id": ["x"], "reason": ["nodata"]}), rejects)
    return root


def write_release(
    root: Path, *, n: int = 3, size: int = 100, layout: str = "features", grid: int = 3
) -> tuple[Path, list[dict[str, Any]]]:
    """A FUSAR-GPT release folder: release.jsonl + images/*.png + aef/*.npz. layout 'features' writes
    {features, positions}; 'wide' writes the older (S, 70) array = lon, lat, row, col, x, y, A00..A63 with
    row / col the anchor's pixel indices. Returns (jsonl path, the anchors written per record)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "aef").mkdir(parents=True, exist_ok=True)
    truth = []
    lines = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8), mode="L").save(
            root / "images" / f"img{i}.png"
        )
        s = grid * grid
        feats = rng.normal(size=(s, 64)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        rows = np.repeat((np.arange(grid) + 0.5) * size / grid, grid).astype(int)
        cols = np.tile((np.arange(grid) + 0.5) * size / grid, grid).astype(int)
        positions = np.stack([(rows + 0.5) / size, (cols + 0.5) / size], 1).astype(np.float32)
        if layout == "features":
            np.savez(root / "aef" / f"img{i}.npz", features=feats, positions=positions)
        else:
            wide = np.zeros((s, 70), dtype=np.float32)
            wide[:, 0], wide[:, 1] = 4.8, 43.4
            wide[:, 2], wide[:, 3] = rows, cols
            wide[:, 4], wide[:, 5] = cols * 10.0, rows * 10.0
            wide[:, 6:] = feats
            np.savez(root / "aef" / f"img{i}.npz", wide)
        truth.append({"features": feats, "positions": positions})
        box = [10, 20, 30, 40]
        lines.append(
            {
                "id": f"img{i}",
                "image": f"images/img{i}.png",
                "aef": f"aef/img{i}.npz",
                "question": "<image>\nDetect all planes. Answer with JSON bbox_2d and label.",
                "answer": json.dumps([{"bbox_2d": box, "label": "plane"}]),
            }
        )
    path = root / "release.jsonl"
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    return path, truth
