"""Benchmark: how many times a build decompresses each AlphaEarth block, on the public mirror's layout.

The public files hold all 64 bands in 1024 x 1024 px blocks (64 MB decompressed), stored bottom-up. A
Sentinel-1 scene is about 25,000 px wide at 10 m; cut into 256 px chips and tasks of 64 windows in
row-major order (as pipelines/plan.py cuts them), a task is a strip of chips two thirds of a chip row
long, and each of its chip rows crosses a dozen blocks. This runs the real `CogEmbeddingProvider` (a
fresh provider per task, as a worker builds one, sharing the process-wide block cache) on the anchors
of every task of such a scene, against a sparse stand-in of a mirror tile (every block unwritten, so a
read costs no inflate and no disk: only the count matters here), and reports block reads against the
distinct blocks under the anchors (the I/O floor: each block once) for three cache policies:

- `none`: no cache (each task reads its blocks);
- `whole_blocks`: the LRU holding whole decompressed blocks (the policy before the lattice);
- `lattice`: the LRU holding the lattice of each block the anchors fall on (the policy now).

    python -m bench.aef_block_reads                      # 25,000 x 16,000 px scene, 256 MB cache
    python -m bench.aef_block_reads --width 10000 --height 10000 --block 512

Writes bench/out/aef_block_reads.json. Seconds are not reported (the reads are of sparse blocks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

from triplet_builder.embeddings import cog
from triplet_builder.embeddings.block_cache import clear_block_caches
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import build_index
from triplet_builder.stages.embed import anchor_positions

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:32631"
YEAR = 2017
SCENE_ORIGIN = (600_000.0, 4_900_000.0)  # the scene's top-left corner (m, EPSG:32631)
OFFSET_BLOCKS = (0.37, 0.6)  # where the scene's corner falls in the tile, in blocks: not on a block edge


def sparse_tile(root: Path, width: int, height: int, block: int) -> None:
    """A 64-band int8 tile in the mirror layout, bottom-up like the public files, no block written."""
    off_r, off_c = (round(f * block) for f in OFFSET_BLOCKS)
    x0 = SCENE_ORIGIN[0] - off_c * 10.0
    south = SCENE_ORIGIN[1] + off_r * 10.0 - height * 10.0
    path = root / str(YEAR) / "31N" / "sparse0000000000-0000000000.tiff"
    path.parent.mkdir(parents=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 64,
        "dtype": "int8",
        "crs": CRS,
        "transform": Affine(10.0, 0.0, x0, 0.0, 10.0, south),  # positive y: raw row 0 is the south edge
        "nodata": -128,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "SPARSE_OK": "TRUE",
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.update_tags(SYNTHETIC="true")
    build_index(root)


def task_anchors(width: int, height: int, chip: int, grid: int, per_task: int) -> list[tuple[Any, Any]]:
    """The (lon, lat) anchors of each task: windows row-major, `per_task` a task, grid x grid a chip."""
    rows, cols = height // chip, width // chip
    windows = [(r, c) for r in range(rows) for c in range(cols)]
    pos = anchor_positions(grid) * chip  # (G*G, 2) (y, x) px within a chip
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    tasks = []
    for i in range(0, len(windows), per_task):
        w = np.array(windows[i : i + per_task])  # (n, 2)
        py = (w[:, :1] * chip + pos[None, :, 0]).ravel()
        px = (w[:, 1:] * chip + pos[None, :, 1]).ravel()
        x = SCENE_ORIGIN[0] + px * 10.0
        y = SCENE_ORIGIN[1] - py * 10.0
        tasks.append(to_lonlat.transform(x, y))
    return tasks


def run_policy(root: Path, tasks: list[tuple[Any, Any]], cache_bytes: int, policy: str) -> dict[str, int]:
    clear_block_caches()
    real = cog.lattice_of
    if policy == "whole_blocks":
        cog.lattice_of = lambda values, start: (start, 1)  # type: ignore[assignment]  # keep every pixel
    try:
        reads = hits = 0
        for lon, lat in tasks:  # a provider per task, as a worker builds one
            p = CogEmbeddingProvider(
                str(root), synthetic=True, cache_bytes=0 if policy == "none" else cache_bytes
            )
            p.sample(np.asarray(lon), np.asarray(lat), YEAR)
            reads += p.stats["block_reads"]
            hits += p.stats["cache_hits"]
            p.close()
    finally:
        cog.lattice_of = real  # type: ignore[assignment]
        clear_block_caches()
    return {"block_reads": reads, "cache_hits": hits}


def distinct_blocks(root: Path, tasks: list[tuple[Any, Any]]) -> int:
    """The I/O floor: the blocks under all anchors, each read once (one call, no cache)."""
    lon = np.concatenate([np.asarray(t[0]) for t in tasks])
    lat = np.concatenate([np.asarray(t[1]) for t in tasks])
    p = CogEmbeddingProvider(str(root), synthetic=True, cache_bytes=0)
    p.sample(lon, lat, YEAR)
    return p.stats["block_reads"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=25_000, help="scene width in 10 m px")
    ap.add_argument("--height", type=int, default=16_000, help="scene height in 10 m px")
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--grid", type=int, default=16, help="anchors per chip side")
    ap.add_argument("--per-task", type=int, default=64, help="windows per task (chips_per_task)")
    ap.add_argument("--block", type=int, default=1024, help="AlphaEarth block side in px (public: 1024)")
    ap.add_argument("--cache-mb", type=int, default=cog.DEFAULT_CACHE_BYTES // 2**20)
    args = ap.parse_args(argv)
    tasks = task_anchors(args.width, args.height, args.chip, args.grid, args.per_task)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "annual"
        sparse_tile(root, args.width + 2 * args.block, args.height + 2 * args.block, args.block)
        floor = distinct_blocks(root, tasks)
        out: dict[str, Any] = {
            "scene_px": [args.width, args.height],
            "chip_px": args.chip,
            "grid": args.grid,
            "windows_per_task": args.per_task,
            "tasks": len(tasks),
            "block_px": args.block,
            "block_mb_decompressed": round(64 * args.block**2 / 2**20, 1),
            "cache_mb": args.cache_mb,
            "distinct_blocks": floor,
        }
        for policy in ("none", "whole_blocks", "lattice"):
            r = run_policy(root, tasks, args.cache_mb * 2**20, policy)
            out[policy] = {**r, "reads_per_block": round(r["block_reads"] / floor, 2)}
            print(policy, out[policy], flush=True)
    print(json.dumps(out, indent=1))
    dest = ROOT / "bench" / "out" / "aef_block_reads.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
