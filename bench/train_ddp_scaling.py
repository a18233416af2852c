"""Benchmark: training steps per second on 1 rank against 2 DDP ranks (torchrun, gloo on CPU) at the same
global batch, from the trainer's own per-step wall times (metrics.jsonl `step_s`, rank 0, gradient all-reduce
included). CPU correctness territory only: on a small shared machine this says what DDP costs on CPU, not what
it gains on GPUs.

    python -m bench.train_ddp_scaling                         # global batch 4, 112 px, 14 steps per run
    python -m bench.train_ddp_scaling --image-size 224 --steps 10
Runs: 1 rank with as many threads as there are cores, 1 rank with 1 thread, 2 ranks with 1 thread each
(torchrun's default); the median step time over the steps after the first two (warm-up) of each.
Results are printed and written to bench/out/train_ddp_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.train_data_reader import build_demo, repeat_shards

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
WARMUP = 2


def write_config(path: Path, *, batch: int, image_size: int, steps: int) -> Path:
    path.write_text(
        f"base: tiny\nimage_size: {image_size}\nmax_length: 1024\n"
        f"stage1: {{data: caption, train: [lora, tlm], max_steps: {steps}, lr: 1.0e-4, batch_size: {batch}, "
        "shuffle_buffer: 16, eval_split: null}\n"
    )
    return path


def stage1_command(config: Path, data: Path, out: Path, ranks: int, *extra: str) -> list[str]:
    """argv of a stage-1 training run: torchrun with `ranks` processes, or one plain process for 1 rank."""
    args = ["-m", "model.train", "--config", str(config), "--data", str(data), "--output-dir", str(out)]
    args += ["--stage", "1", *extra]
    if ranks > 1:
        return [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(ranks), *args]
    return [sys.executable, *args]


def run(
    ranks: int, threads: int, *, data: Path, work: Path, global_batch: int, image_size: int, steps: int
) -> dict[str, Any]:
    """One training run; returns its median step time and steps/s (rank 0's view, after warm-up)."""
    name = f"r{ranks}t{threads}"
    config = write_config(
        work / f"{name}.yaml", batch=global_batch // ranks, image_size=image_size, steps=steps
    )
    out = work / name
    cmd = stage1_command(config, data, out, ranks)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed: {proc.stderr[-1500:]}")
    rows = [json.loads(x) for x in (out / "stage1" / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_s"] for r in rows if "step_s" in r][WARMUP:]
    median = statistics.median(times)
    return {
        "ranks": ranks,
        "threads_per_rank": threads,
        "batch_per_rank": global_batch // ranks,
        "median_step_s": round(median, 4),
        "steps_per_s": round(1 / median, 3),
        "steps_timed": len(times),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--global-batch", type=int, default=4)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--steps", type=int, default=14)
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = build_demo(work / "demo")
        rows = repeat_shards(demo, work / "shards", copies=2)
        kw = {
            "data": work / "shards",
            "work": work,
            "global_batch": args.global_batch,
            "image_size": args.image_size,
            "steps": args.steps,
        }
        runs = [run(1, cores, **kw), run(1, 1, **kw), run(2, 1, **kw)]
    base = runs[0]["steps_per_s"]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {cores} CPU cores (shared), no GPU",
        "torch": __import__("torch").__version__,
        "rows": rows,
        "global_batch": args.global_batch,
        "image_size": args.image_size,
        "runs": runs,
        "two_ranks_over_one_rank_all_cores": round(runs[2]["steps_per_s"] / base, 3),
        "two_ranks_over_one_rank_one_thread": round(runs[2]["steps_per_s"] / runs[1]["steps_per_s"], 3),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train_ddp_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| ranks x threads | batch per rank | median step | steps / s |")
    print("|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['ranks']} x {r['threads_per_rank']} | {r['batch_per_rank']} | "
            f"{r['median_step_s'] * 1000:.0f} ms | {r['steps_per_s']:.2f} |"
        )
    print(
        f"2 ranks / 1 rank (all cores): {result['two_ranks_over_one_rank_all_cores']}x; "
        f"2 ranks / 1 rank (1 thread): {result['two_ranks_over_one_rank_one_thread']}x"
    )
    return result


if __name__ == "__main__":
    main()
