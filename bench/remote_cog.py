"""Benchmark: the COG provider over HTTP range requests from a loopback server with a fixed latency.

Builds a mirror-layout root of one band-interleaved 64-band int8 file with incompressible codes and the
mirror's 1024 px blocks (2048 x 2048 px: 4 blocks; the real files are 8192 px, 64 blocks), serves it on
127.0.0.1 with a fixed latency per request, and samples the 16 x 16 anchors of 256 px chips (10 m) laid
over it, in batches as the Embed stage does. Reports requests per chip, bytes fetched per chip against the
bytes of the anchors kept (S x 64 int8 codes), and chips per second.

    python -m bench.remote_cog [--latency 0.2] [--chips 64]
Writes bench/out/remote_cog.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import serve  # noqa: E402
from tests.servers.http_range import RangeHandler, range_server_attrs  # noqa: E402
from triplet_builder.embeddings.cog import CogEmbeddingProvider  # noqa: E402
from triplet_builder.embeddings.index import build_index  # noqa: E402
from triplet_builder.stages.embed import anchor_positions  # noqa: E402

SIZE, BLOCK, PX = 2048, 1024, 10.0
T = Affine(PX, 0, 600000, 0, PX, 4800000)  # bottom-up, like the mirror


def make_root(root: Path) -> Path:
    tile = root / "2024/31N/benchhash0000000000-0000000000-0000000000.tiff"
    tile.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "dtype": "int8", "count": 64, "width": SIZE, "height": SIZE, "crs": "EPSG:32631",
        "transform": T, "nodata": -128, "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK,
        "compress": "deflate", "interleave": "band",
    }  # fmt: skip
    with rasterio.open(tile, "w", **profile) as ds:
        for b in range(1, 65):
            ds.write(rng.integers(-127, 128, (SIZE, SIZE), dtype=np.int8), b)
    build_index(root)
    return tile


def chip_points(chip: int, grid: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pos = anchor_positions(grid)
    tr = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    lons, lats = [], []
    for r0 in range(0, SIZE - chip + 1, chip):
        for c0 in range(0, SIZE - chip + 1, chip):
            x, y = T * (c0 + pos[:, 1] * chip, r0 + pos[:, 0] * chip)
            lon, lat = tr.transform(x, y)
            lons.append(np.asarray(lon))
            lats.append(np.asarray(lat))
    return lons, lats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds added to every request")
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64, help="chips per sample() call (the Embed stage's batch)")
    args = ap.parse_args(argv)
    out: dict[str, object] = {"latency_s": args.latency, "chip_px": args.chip, "grid": args.grid}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "annual"
        tile = make_root(root)
        lons, lats = chip_points(args.chip, args.grid)
        n = len(lons)
        with serve(RangeHandler, **range_server_attrs(root, latency_s=args.latency)) as srv:
            p = CogEmbeddingProvider(srv.url, user_agent="sar-triplets/bench", cache_dir=str(Path(d) / "c"))
            p.sample(lons[0][:1], lats[0][:1], 2024)  # index + file header: paid once per worker
            srv.log.clear()  # type: ignore[attr-defined]
            p.close()
            t0 = time.perf_counter()
            valid = 0
            for i in range(0, n, args.batch):
                _, ok = p.sample(
                    np.concatenate(lons[i : i + args.batch]), np.concatenate(lats[i : i + args.batch]), 2024
                )
                valid += int(ok.sum())
            dt = time.perf_counter() - t0
            log = list(srv.log)  # type: ignore[attr-defined]
        fetched = sum(r.nbytes for r in log)
        kept = valid * 64
        out.update(
            chips=n,
            file_mb=round(tile.stat().st_size / 2**20, 1),
            requests=len(log),
            requests_per_chip=round(len(log) / n, 2),
            bytes_fetched_per_chip=round(fetched / n),
            anchor_bytes_per_chip=round(kept / n),
            fetched_over_kept=round(fetched / max(kept, 1), 1),
            fetched_over_file=round(fetched / tile.stat().st_size, 3),
            chips_per_s=round(n / dt, 2),
            seconds=round(dt, 2),
            block_reads=p.stats["block_reads"],
        )
    print(json.dumps(out, indent=1))
    (ROOT / "bench/out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/out/remote_cog.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
