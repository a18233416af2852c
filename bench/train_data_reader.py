"""Benchmark: samples per second of ShardDataset (DataLoader with 0 and 2 workers) against the training step rate
of the tiny model, to say whether the reader can keep the trainer fed.

The data: the demo shards (built offline by the real pipeline) repeated to a few thousand rows (chip ids made
unique, row groups of 256 as the builder writes them). The step: what one step of model/train.py's loop does on
the main process: collate a batch (model.collate.Collator), forward + backward of the tiny FUSAR-GPT (base +
TLM + LoRA from model.assemble.build_model with model/configs/tiny.yaml) and an AdamW step. The ratio reader
samples/s / step samples/s above 1 means the reader is not the bottleneck.

    python -m bench.train_data_reader                       # 32 copies of the demo (~3,000 rows)
    python -m bench.train_data_reader --copies 8 --steps 5  # quicker
Results are printed and written to bench/out/data_reader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
CONFIG = ROOT / "model" / "configs" / "tiny.yaml"


def build_demo(folder: Path) -> Path:
    """The demo shards, built by the real pipeline (about 10 s, offline)."""
    cmd = [sys.executable, "-m", "pipelines", "build", str(DEMO), "--set", f"output.dir={folder}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return folder / "data"


def repeat_shards(src: Path, dst: Path, copies: int, row_group_rows: int = 256) -> int:
    """Write the demo rows `copies` times into dst/data (ids suffixed per copy); returns the row count."""
    table = pq.read_table(src)  # the small demo only: the benchmark's input, not the reader under test
    (dst / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        part = table.filter(pc.equal(table.column("split"), split))
        if not part.num_rows:
            continue
        copies_t = []
        for k in range(copies):
            ids = pc.binary_join_element_wise(part.column("chip_id"), pa.scalar(f"{k:03d}"), "-")
            copies_t.append(
                part.set_column(part.schema.get_field_index("chip_id"), part.schema.field("chip_id"), ids)
            )
        out = pa.concat_tables(copies_t).replace_schema_metadata(table.schema.metadata)
        pq.write_table(out, dst / "data" / f"{split}-00000-000.parquet", row_group_size=row_group_rows)
    return table.num_rows * copies


def reader_rate(
    data: Path, *, num_workers: int, image_size: int, batch_size: int, stage: str
) -> dict[str, Any]:
    """Samples/s of one full epoch of the train split through a DataLoader; first batch (worker start-up,
    first row group) timed apart from the steady state."""
    from model.data import ShardDataset

    ds = ShardDataset(data, split="train", stage=stage, image_size=image_size, shuffle_buffer=256, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    t0 = time.perf_counter()
    n, t_first = 0, 0.0
    for i, batch in enumerate(loader):
        n += len(batch)
        if i == 0:
            t_first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    steady = (n - batch_size) / max(total - t_first, 1e-9)
    return {
        "num_workers": num_workers,
        "image_size": image_size,
        "stage": stage,
        "samples": n,
        "seconds": round(total, 3),
        "first_batch_s": round(t_first, 3),
        "samples_per_s": round(n / total, 1),
        "steady_samples_per_s": round(steady, 1),
    }


def step_rate(data: Path, *, steps: int, warmup: int = 2) -> dict[str, Any]:
    """Samples/s of the tiny model's training step (collate + forward + backward + AdamW) on CPU."""
    from model.assemble import build_model, set_trainable
    from model.collate import Collator
    from model.config import load_config
    from model.data import ShardDataset

    cfg = load_config(CONFIG, {"data": str(data)})
    st = cfg.stage("stage1")
    model, processor = build_model(cfg)
    set_trainable(model, tuple(st.train))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=st.lr)
    collator = Collator(processor, max_length=cfg.max_length)
    ds = ShardDataset(data, split="train", stage=st.data, image_size=cfg.image_size, shuffle_buffer=0)
    it = iter(ds)
    batches = [[next(it) for _ in range(st.batch_size)] for _ in range(steps + warmup)]
    model.train()
    times = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss = model(**collator(batch)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "image_size": cfg.image_size,
        "batch_size": st.batch_size,
        "stage": st.data,
        "steps_timed": len(times),
        "seconds_per_step": round(per_step, 4),
        "samples_per_s": round(st.batch_size / per_step, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=32, help="times the demo rows are repeated (96 rows each)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--batch-size", type=int, default=8, help="reader DataLoader batch size")
    p.add_argument("--out", type=Path, default=OUT / "data_reader.json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_reader_") as tmp:
        demo = build_demo(Path(tmp) / "demo")
        data = Path(tmp) / "repeated"
        rows = repeat_shards(demo, data, args.copies)
        step = step_rate(data, steps=args.steps)
        readers = [
            reader_rate(data, num_workers=w, image_size=size, batch_size=args.batch_size, stage="caption")
            for size in (step["image_size"], 504)
            for w in (0, 2)
        ]
    for r in readers:
        r["ratio_to_step"] = round(r["samples_per_s"] / step["samples_per_s"], 1)
    result = {
        "what": "ShardDataset samples/s vs the tiny model's training-step samples/s (CPU)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "rows": rows,
        "step": step,
        "reader": readers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"step: {step['samples_per_s']} samples/s ({step['seconds_per_step']} s/step, batch {step['batch_size']})"
    )
    for r in readers:
        print(
            f"reader {r['image_size']} px, {r['num_workers']} workers: {r['samples_per_s']} samples/s "
            f"(steady {r['steady_samples_per_s']}), ratio to step {r['ratio_to_step']}"
        )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
