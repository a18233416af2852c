"""Benchmark: chips per second on 1 and 2 workers (and the scaling ratio), and the cost of resume (the
time a rerun takes to skip a finished build, against the time of the build), on a generated scene.

    python -m bench.scaling                 # a 4,000 x 4,000 px scene, 256 px chips
    python -m bench.scaling --size 6000
Wall times include cluster start and planning, as a user sees them; results go to bench/out/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.build_throughput import OUT, ROOT, bench_region, make_large_scene, run_build


def rerun_seconds(region: Path, workers: int) -> float:
    """Wall seconds of a rerun into a finished build's folder (no --overwrite: every task is skipped)."""
    cmd = [
        sys.executable,
        "-m",
        "pipelines",
        "build",
        str(region),
        "--no-progress",
        "--workers",
        str(workers),
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0 or "reused" not in r.stdout:
        raise SystemExit(f"rerun did not reuse the finished build: {r.stdout[-300:]} {r.stderr[-300:]}")
    return wall


def measure(size: int, chip: int) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    scene = OUT / "scenes" / f"large_{size}_0.tif"
    scene.parent.mkdir(exist_ok=True)
    if not scene.exists():
        make_large_scene(scene, size, seed=0)
    aef = OUT / f"aef_{size}"
    if not (aef / "aef_index.parquet").exists():
        shutil.rmtree(aef, ignore_errors=True)
        from triplet_builder.embeddings.synthetic import main as synth

        synth(["--out", str(aef), "--scenes", str(scene), "--years", "2017", "--seed", "0"])
    region = bench_region(f"scaling_{size}", [scene], aef, chip)
    res: dict[str, Any] = {"size_px": size, "chip_px": chip}
    for workers in (1, 2):
        m, wall, _ = run_build(region, workers)
        res[f"workers_{workers}"] = {
            "windows": m["counts"]["windows"],
            "wall_s": round(wall, 2),
            "chips_per_s": round(m["counts"]["windows"] / wall, 2),
        }
    res["scaling_2_vs_1"] = round(res["workers_2"]["chips_per_s"] / res["workers_1"]["chips_per_s"], 2)
    skip = rerun_seconds(region, 2)
    res["resume"] = {
        "rerun_of_finished_build_s": round(skip, 2),
        "build_s": res["workers_2"]["wall_s"],
        "ratio": round(skip / res["workers_2"]["wall_s"], 3),
    }
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--chip", type=int, default=256)
    args = ap.parse_args(argv)
    res = measure(args.size, args.chip)
    print(json.dumps(res, indent=1))
    (OUT / "scaling.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
