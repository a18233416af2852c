"""Benchmark: the Earth Engine client (real `ee` package) against the loopback server with a fixed latency.

Two workloads, each with a fixed injected latency per computePixels request (default 200 ms):
- Sentinel-1 windows: chips of a virtual 10 m UTM scene read through the ReadChips stage (prefetching
  a task's windows with bounded concurrency; one request per chip, both polarisations).
- AlphaEarth anchors: the 16 x 16 anchors of 256 px chips (10 m) sampled as the Embed stage does (one
  call per batch of chips), grouped into as few computePixels grids as the 48 MiB limit allows.

Reports requests per chip, bytes per chip, chips per second, and the achieved concurrency measured AT
THE SERVER: the time-weighted mean number of requests in flight while any was, over max_concurrent.
A second pass over the same chips measures the cache (it must make zero requests).

    python -m bench.remote_earthengine [--latency 0.2] [--max-concurrent 8] [--s1-chips 256] [--aef-chips 16]
Writes bench/out/remote_earthengine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import serve  # noqa: E402
from tests.servers.earthengine import EEHandler, Raster, ee_server_attrs, pixel_requests  # noqa: E402
from triplet_builder.earthengine import ClientSettings  # noqa: E402
from triplet_builder.embeddings.earthengine import BANDS, COLLECTION, EarthEngineEmbeddingProvider  # noqa: E402
from triplet_builder.geo import scene_geo  # noqa: E402
from triplet_builder.record import Backscatter, ChipRecord, GeorefKind, Scale, SceneRef, Window, chip_id_for  # noqa: E402
from triplet_builder.sources.earthengine import EarthEngineBandRef  # noqa: E402
from triplet_builder.stages.base import Stats  # noqa: E402
from triplet_builder.stages.embed import anchor_positions  # noqa: E402
from triplet_builder.stages.tile import ReadChips  # noqa: E402

PX = 10.0
X0, Y0 = 600000.0, 4810000.0  # EPSG:32631, north-west corner
S1_ID = "COPERNICUS/S1_GRD/S1A_IW_GRDH_1SDV_20240101T000000_BENCH"


def write_s1(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(-12, 3, (2, size, size)).astype(np.float32)
    prof = {"driver": "GTiff", "dtype": "float32", "count": 2, "width": size, "height": size,
            "crs": "EPSG:32631", "transform": Affine(PX, 0, X0, 0, -PX, Y0), "nodata": -99.0,
            "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(data)


def write_aef(path: Path, size: int) -> None:
    """64 int8 bands of valid codes, bottom-up like the public files."""
    rng = np.random.default_rng(1)
    prof = {"driver": "GTiff", "dtype": "int8", "count": 64, "width": size, "height": size,
            "crs": "EPSG:32631", "transform": Affine(PX, 0, X0, 0, PX, Y0 - size * PX), "nodata": -128,
            "tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"}  # fmt: skip
    with rasterio.open(path, "w", **prof) as ds:
        for b in range(1, 65):
            ds.write(rng.integers(-127, 128, (size, size), dtype=np.int8), b)


def concurrency(events: list[tuple[float, int]]) -> tuple[float, float]:
    """(time-weighted mean in flight while any request was, busy seconds) from (time, +1/-1) events."""
    events = sorted(events)
    level, area, busy, last = 0, 0.0, 0.0, None
    for t, d in events:
        if last is not None and level > 0:
            area += level * (t - last)
            busy += t - last
        level += d
        last = t
    return (area / busy if busy else 0.0), busy


def s1_scene(settings: ClientSettings, size: int) -> SceneRef:
    return SceneRef(
        scene_id=S1_ID.rsplit("/", 1)[-1],
        bands=(EarthEngineBandRef(f"ee://{S1_ID}", 1, "VV", settings), EarthEngineBandRef(f"ee://{S1_ID}", 2, "VH", settings)),
        acquired=datetime(2024, 1, 1, tzinfo=timezone.utc), acquired_source="earthengine", sensor="Sentinel-1A",
        mode="IW", orbit_direction="descending", scale=Scale.DB, scale_source="declared",
        backscatter=Backscatter.SIGMA0, georef=GeorefKind.AFFINE, crs="EPSG:32631", width=size, height=size,
        pixel_size_m=PX, nodata=None, product="GRD", transform=(PX, 0.0, X0, 0.0, -PX, Y0),
    )  # fmt: skip


def run_s1(srv: Any, settings: ClientSettings, size: int, chip: int, n: int) -> dict[str, Any]:
    scene = s1_scene(settings, size)
    per_row = size // chip
    windows = [Window((i % per_row) * chip, (i // per_row) * chip, chip, chip, chip, chip) for i in range(n)]
    out: dict[str, Any] = {}
    for name in ("first", "rerun"):
        srv.events.clear()
        before = len(pixel_requests(srv))
        stats = Stats()
        recs = [ChipRecord(chip_id_for(scene.scene_id, w), scene, w) for w in windows]
        stage = ReadChips(max_nodata_fraction=1.0, prefetch=64)
        t0 = time.perf_counter()
        done = list(stage.run(recs, stats))
        secs = time.perf_counter() - t0
        stage.close()
        assert len(done) == n and all(r.db is not None for r in done)
        reqs = pixel_requests(srv)[before:]
        mean_inflight, _ = concurrency(list(srv.events))
        out[name] = {
            "chips": n,
            "seconds": round(secs, 3),
            "chips_per_s": round(n / secs, 1),
            "requests": len(reqs),
            "requests_per_chip": round(len(reqs) / n, 3),
            "bytes_per_chip": round(sum(r.nbytes for r in reqs) / n),
            "mean_in_flight": round(mean_inflight, 2),
            "achieved_concurrency": round(mean_inflight / settings.max_concurrent, 3),
            "max_in_flight": srv.max_inflight,
            "stage_extra": dict(stats["tile"].extra),
        }
        srv.max_inflight = 0
    return out


def run_aef(srv: Any, settings: ClientSettings, size: int, chip: int, n: int) -> dict[str, Any]:
    provider = EarthEngineEmbeddingProvider(settings)
    scene = s1_scene(settings, size)
    geo = scene_geo(scene)
    pos = anchor_positions(16)
    per_row = size // chip
    lons, lats = [], []
    for i in range(n):
        w = Window((i % per_row) * chip, (i // per_row) * chip, chip, chip, chip, chip)
        lon, lat = geo.chip_pixel_to_lonlat(w, pos[:, 0], pos[:, 1])
        lons.append(lon)
        lats.append(lat)
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    out: dict[str, Any] = {}
    for name in ("first", "rerun"):
        srv.events.clear()
        before = len(pixel_requests(srv))
        t0 = time.perf_counter()
        _, valid = provider.sample(lon, lat, 2024)
        secs = time.perf_counter() - t0
        assert valid.all(), "every anchor lies on the served raster"
        reqs = pixel_requests(srv)[before:]
        mean_inflight, _ = concurrency(list(srv.events))
        out[name] = {
            "chips": n,
            "anchors_per_chip": 256,
            "seconds": round(secs, 3),
            "chips_per_s": round(n / secs, 2),
            "requests": len(reqs),
            "requests_per_chip": round(len(reqs) / n, 3),
            "bytes_per_chip": round(sum(r.nbytes for r in reqs) / n),
            "anchor_bytes_per_chip": 256 * 64,
            "mean_in_flight": round(mean_inflight, 2),
            "achieved_concurrency": round(mean_inflight / settings.max_concurrent, 3),
            "counters": provider.drain_counters(),
        }
    provider.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds added to every computePixels answer")
    ap.add_argument("--max-concurrent", type=int, default=8)
    ap.add_argument("--s1-chips", type=int, default=256)
    ap.add_argument("--s1-chip-px", type=int, default=128)
    ap.add_argument("--aef-chips", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "remote_earthengine.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("EE_ACCESS_TOKEN", "bench")  # the loopback server checks this token
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        s1_size = args.s1_chip_px * int(np.ceil(np.sqrt(args.s1_chips)))
        aef_size = 256 * int(np.ceil(np.sqrt(args.aef_chips)))
        write_s1(tmp / "s1.tif", s1_size)
        write_aef(tmp / "aef.tif", aef_size)
        rasters = {
            S1_ID: [Raster(tmp / "s1.tif", ("VV", "VH"), datetime(2024, 1, 1, tzinfo=timezone.utc))],
            COLLECTION: [Raster(tmp / "aef.tif", BANDS, datetime(2024, 1, 1, tzinfo=timezone.utc), "aef")],
        }
        with serve(
            EEHandler, **ee_server_attrs(rasters, latency_s=args.latency, token=os.environ["EE_ACCESS_TOKEN"])
        ) as srv:
            settings = ClientSettings(
                project="bench-project", url=srv.url, cache_dir=str(tmp / "cache"),
                max_concurrent=args.max_concurrent, timeout_s=60.0,
            )  # fmt: skip
            s1 = run_s1(srv, settings, s1_size, args.s1_chip_px, args.s1_chips)
            aef = run_aef(srv, settings, aef_size, 256, args.aef_chips)
    result = {
        "latency_s": args.latency,
        "max_concurrent": args.max_concurrent,
        "s1_windows": {"chip_px": args.s1_chip_px, **s1},
        "aef_anchors": {"chip_px": 256, "grid": 16, **aef},
        "note": "loopback server in the same process (threads); achieved concurrency is measured at the server",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
