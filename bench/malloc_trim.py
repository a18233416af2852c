"""Benchmark: the build's workers with and without Dask's MALLOC_TRIM_THRESHOLD_, in one run.

Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 so that glibc hands freed memory back to the OS
at once. Setting it also pins glibc's mmap threshold at 128 KiB: every chip-sized array is then a fresh
mmap whose pages are faulted in and zeroed again. The build's LocalCluster starts its workers without it
(pipelines/executor.py `WORKER_ENV_UNSET`); a value set in the build's environment still reaches them, which
is how this benchmark builds the same region both ways.

The large generated scene (`bench.build_throughput`'s, 256 px chips) is built with 1 and with 2 workers,
with Dask's setting and without it, interleaved `--repeats` times: medians of the stage seconds (summed
over tasks), the wall and the peak RSS of any process, and the same-run ratios.

    python -m bench.malloc_trim                  # writes bench/out/malloc_trim.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from bench.build_throughput import OUT, bench_region, generated_inputs, machine, run_build

DASK_DEFAULT = {"MALLOC_TRIM_THRESHOLD_": "65536"}  # distributed.nanny.pre-spawn-environ


def measure(size: int, chip: int, repeats: int, workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    scenes, aef = generated_inputs(size, 1)
    region = bench_region("malloc_trim", scenes[:1], aef, chip)
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeats):
        for n in workers:
            for label, env in (("without", None), ("dask_default", DASK_DEFAULT)):
                m, wall, peak = run_build(region, n, env=env)
                runs.setdefault(f"{n}w_{label}", []).append(
                    {
                        "stage_s": round(sum(s["seconds"] for s in m["stages"].values()), 2),
                        "wall_s": round(wall, 2),
                        "peak_rss_mb": peak,
                        "kept": m["counts"]["chips_kept"],
                        "load_average_1min": round(os.getloadavg()[0], 2),
                    }
                )
    med = {
        k: {q: statistics.median(r[q] for r in v) for q in ("stage_s", "wall_s", "peak_rss_mb")}
        for k, v in runs.items()
    }
    ratios = {
        f"{n}w": {
            q: round(med[f"{n}w_dask_default"][q] / med[f"{n}w_without"][q], 3)
            for q in ("stage_s", "wall_s", "peak_rss_mb")
        }
        for n in workers
    }
    return {
        "machine": machine(),
        "size_px": size,
        "chip_px": chip,
        "runs": runs,
        "medians": med,
        "dask_default_over_without": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_000, help="generated scene size in px (square)")
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    res = measure(args.size, args.chip, args.repeats)
    for k, v in res["medians"].items():
        print(
            f"{k:>16}: stage {v['stage_s']:.2f} s, wall {v['wall_s']:.2f} s, peak RSS {v['peak_rss_mb']} MB"
        )
    for k, v in res["dask_default_over_without"].items():
        print(
            f"{k}: with Dask's MALLOC_TRIM_THRESHOLD_ / without: stage {v['stage_s']}x, wall {v['wall_s']}x, "
            f"peak RSS {v['peak_rss_mb']}x"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "malloc_trim.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
