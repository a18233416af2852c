"""Benchmark: peak memory of a build against scene size (1,000 to 20,000 px on a side).

Every scene has the same 10 m grid and origin and the same speckled content in its top-left corner,
where the region lies; only the scene's size changes. The chips built are therefore the same few in
every run, and a peak that grows with the scene means something reads or holds the whole scene (a
scene-level statistic, a full read) instead of windows. Peak RSS is the largest resident set of any
process of the build (driver or worker, `RUSAGE_CHILDREN` of a wrapper), one worker.

    python -m bench.memory                          # 1000 2000 5000 10000 20000 px
    python -m bench.memory --sizes 2000 20000
Results are printed as ratios to the smallest scene and written to bench/out/memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.windows import Window as RioWindow

from bench.build_throughput import OUT, bench_region, run_build, scene_profile

CORNER = 1024  # px of speckled content in the top-left corner (the region lies in it)
# the region: inside the corner of every scene (640000 E / 4815000 N, UTM 31N, 10 m pixels)
REGION_BBOX = [4.75, 43.40, 4.83, 43.46]


def make_scene(path: Path, size: int, seed: int = 0) -> None:
    """A size x size px float32 dB scene: speckle and bright targets in the top-left CORNER px, a flat
    -9 dB elsewhere (cheap to write and to compress at 20,000 px; the build never chips it)."""
    rng = np.random.default_rng(seed)
    profile = scene_profile(size)
    with rasterio.open(path, "w", **profile) as ds:
        ds.update_tags(ACQUISITION_START_TIME="2017-06-15T05:43:59Z")
        ds.set_band_description(1, "VV")
        for row in range(0, size, 512):
            h = min(512, size - row)
            strip = np.full((h, size), -9.0, np.float32)
            if row < CORNER:
                c = min(CORNER, size)
                lin = 10 ** (-9.0 / 10) * rng.exponential(1.0, (h, c))
                lin[rng.random((h, c)) < 2e-4] = 300.0
                strip[:, :c] = 10 * np.log10(lin).astype(np.float32)
            ds.write(strip, 1, window=RioWindow(0, row, size, h))


def measure(sizes: list[int], chip: int = 128, out: Path = OUT / "memory") -> dict[str, Any]:
    """Build the region on each scene size; peak RSS (MB) and chip counts per size, ratios to the first."""
    out.mkdir(parents=True, exist_ok=True)
    scenes = {}
    for size in sizes:
        p = out / f"scene_{size}.tif"
        if not p.exists():
            make_scene(p, size)
        scenes[size] = p
    aef = out / "aef"
    if not (aef / "aef_index.parquet").exists():
        shutil.rmtree(aef, ignore_errors=True)
        from triplet_builder.embeddings.synthetic import main as synth

        synth(["--out", str(aef), "--scenes", str(scenes[min(sizes)]), "--years", "2017", "--seed", "0"])
    rows = []
    for size in sizes:
        region = bench_region(f"memory_{size}", [scenes[size]], aef, chip)
        raw = yaml.safe_load(region.read_text())
        region.unlink()
        raw["area"] = {"bbox": REGION_BBOX}
        raw["output"] = {"dir": str(out / f"memory_{size}")}
        region = out / f"memory_{size}.yaml"
        region.write_text(yaml.safe_dump(raw))
        m, wall, peak = run_build(region, workers=1)
        rows.append({"size_px": size, "windows": m["counts"]["windows"], "peak_rss_mb": peak, "wall_s": wall})
    base = rows[0]["peak_rss_mb"]
    for r in rows:
        r["ratio_to_smallest"] = round(r["peak_rss_mb"] / max(base, 1), 2)
        r["wall_s"] = round(r["wall_s"], 1)
    return {"chip_px": chip, "runs": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    ap.add_argument("--chip", type=int, default=128)
    args = ap.parse_args(argv)
    res = measure(sorted(args.sizes), args.chip)
    for r in res["runs"]:
        print(
            f"{r['size_px']:>6} px: {r['windows']} windows, peak RSS {r['peak_rss_mb']} MB "
            f"({r['ratio_to_smallest']}x the smallest), {r['wall_s']} s"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
