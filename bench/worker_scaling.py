"""Benchmark: 2 workers against 1 on this machine: the build's wall, and its throughput once every
worker is busy.

A build's wall holds a fixed part that no second worker shortens: imports, the cluster's start and
close, each worker's first task (its imports, the gazetteer), the index and the dataset card. The
steady throughput is what a long build gets: the windows of the tasks that finish after every worker has
finished one, per second from that moment to the last task's end (the last task's tail is included).

The N-scene region of `bench.build_throughput` (generated 10,000 px scenes, 256 px chips, 9 tasks per
scene) is built in this process through `pipelines.executor.build`, with 1 and with 2 workers, interleaved
`--repeats` times. Task end times come from the build's own progress hook (a StageProgress that records
them). Medians and same-run ratios; the fixed part is estimated from the two walls and the steady rates.

    python -m bench.worker_scaling                  # writes bench/out/worker_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.build_throughput import OUT, bench_region, generated_inputs, machine
from pipelines.progress import StageProgress


class _Recorder(StageProgress):
    """The build's progress hook, recording when each task finished and its windows."""

    def __init__(self, names: Sequence[str], windows: int) -> None:
        super().__init__(names, windows, bars=False)
        self.ends: list[tuple[float, int]] = []

    def finish(self, task_id: int, stats: dict[str, Any]) -> None:
        super().finish(task_id, stats)
        self.ends.append((time.perf_counter(), int(stats.get("tile", {}).get("seen", 0))))


def steady_rate(ends: list[tuple[float, int]], workers: int) -> float:
    """Windows per second of the tasks finishing after the `workers`-th task end, from that end to the
    last: the rate once every worker has finished a task (each worker's first task holds its start-up)."""
    ends = sorted(ends)
    if len(ends) <= workers:
        raise ValueError(f"{len(ends)} tasks for {workers} workers: no task finishes in the steady part")
    t0 = ends[workers - 1][0]
    return sum(n for _, n in ends[workers:]) / (ends[-1][0] - t0)


def one_build(region: Any, workers: int) -> dict[str, Any]:
    from pipelines.executor import build
    from pipelines.plan import plan
    from triplet_builder.config import load_region
    from triplet_builder.stages.assemble import stage_names

    cfg = load_region(region)
    windows = sum(len(t.windows) for t in plan(cfg).tasks)
    rec = _Recorder(stage_names(cfg.stages, labels=cfg.facts.labels is not None), windows)
    t0 = time.perf_counter()
    m = build(cfg, workers=workers, progress=rec, overwrite=True)
    wall = time.perf_counter() - t0
    return {
        "wall_s": round(wall, 2),
        "windows": m["counts"]["windows"],
        "tasks": len(rec.ends),
        "steady_windows_per_s": round(steady_rate(rec.ends, workers), 2),
        "first_task_end_s": round(min(t for t, _ in rec.ends) - t0, 2),
        "after_last_task_s": round(t0 + wall - max(t for t, _ in rec.ends), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def measure(scenes: int, size: int, chip: int, repeats: int) -> dict[str, Any]:
    paths, aef = generated_inputs(size, scenes)
    region = bench_region(f"worker_scaling_{scenes}", paths, aef, chip)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(repeats):
        for n in (1, 2):
            runs[n].append(one_build(region, n))
            print(json.dumps({"workers": n, **runs[n][-1]}))

    def med(n: int, k: str) -> float:
        return float(statistics.median(r[k] for r in runs[n]))

    wall1, wall2 = med(1, "wall_s"), med(2, "wall_s")
    rate1, rate2 = med(1, "steady_windows_per_s"), med(2, "steady_windows_per_s")
    windows = runs[1][0]["windows"]
    # wall = fixed + windows / steady rate: the fixed part each wall leaves beside its steady work
    fixed = {str(n): round(w - windows / r, 2) for n, w, r in ((1, wall1, rate1), (2, wall2, rate2))}
    return {
        "machine": machine(),
        "scenes": scenes,
        "windows": windows,
        "runs": {str(n): v for n, v in runs.items()},
        "median_wall_s": {"1": wall1, "2": wall2},
        "median_steady_windows_per_s": {"1": rate1, "2": rate2},
        "wall_ratio_2_vs_1": round(wall1 / wall2, 3),
        "steady_ratio_2_vs_1": round(rate2 / rate1, 3),
        "fixed_s": fixed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=4, help="generated scenes of the region (9 tasks each)")
    ap.add_argument("--size", type=int, default=10_000, help="scene size in px (square)")
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    res = measure(args.scenes, args.size, args.chip, args.repeats)
    print(
        f"{res['scenes']} scenes, {res['windows']} windows: wall 1 / 2 workers {res['median_wall_s']['1']} / "
        f"{res['median_wall_s']['2']} s ({res['wall_ratio_2_vs_1']}x); steady {res['median_steady_windows_per_s']['1']}"
        f" / {res['median_steady_windows_per_s']['2']} windows/s ({res['steady_ratio_2_vs_1']}x); fixed part "
        f"{res['fixed_s']['1']} / {res['fixed_s']['2']} s"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "worker_scaling.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
