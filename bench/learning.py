"""Does the trainer learn, and do the anchors reach the answer through the TLM? Two generated tasks, trained
and scored through the real path: triplet shards (schemas.triplet rows) -> ShardDataset -> Collator ->
model.train's two-stage loop -> checkpoints -> model.eval (greedy generate, with and without the anchors).

- `count` (the answer is visible in the image): 1-4 bright square targets (40-56 px, one per quadrant) on a dark noisy 112 px chip.
  Every chip has the same anchors. Stage 1 captions "N bright targets."; stage 2 counting QA
  answers "N".
- `anchors` (the answer is carried ONLY by the anchors): every chip is the same image; each chip's 4 x 4
  AlphaEarth-like anchors are a class prototype (one random unit 64-d vector per class) plus noise. Stage 1
  captions "A SAR chip of a <class> region."; stage 2 classification QA answers "<class>". Only a model whose
  visual tokens are modulated by the anchors (the TLM hook) can beat chance; the same weights with the
  anchors withheld, and a model trained without a TLM, cannot.

Every figure is printed beside the majority-answer baseline (always answering the most common training
answer). Used by tests/model/test_learning.py (tiny, CPU) and bench/gpu_learning.sh (wider, CUDA, bf16):

    python -m bench.learning --device cpu --small --out bench/out/learning.json
    python -m bench.learning --device cuda --width 1024 --layers 4 --out $OUT/gpu_learning.json
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas import triplet_schema
from schemas.aef import quantize

log = logging.getLogger("bench.learning")

SIZE = 112  # px: 8 x 8 patches of 14 px -> 16 visual tokens
GRID = 4  # anchors per side
CLASSES = ("water", "forest", "cropland", "urban")
CAPTION_Q = "Describe this SAR image."
COUNT_Q = "How many bright targets are in the image?"
CLASS_Q = "What is the land-cover class of this region?"
SPLITS = {"train": 0, "validation": 1, "test": 2}


# == the data ======================================================================================
def _png(arr: np.ndarray) -> bytes:
    """(H, W) uint8 -> an LA PNG (grey + an all-valid alpha mask), the chips' layout."""
    la = np.stack([arr, np.full_like(arr, 255)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(la, mode="LA").save(buf, format="PNG")
    return buf.getvalue()


def count_image(k: int, rng: np.random.Generator) -> np.ndarray:
    """A dark noisy chip with k bright square targets (40-56 px a side), each in its own quadrant."""
    img = rng.integers(10, 60, size=(SIZE, SIZE)).astype(np.uint8)
    half = SIZE // 2
    for quadrant in rng.choice(4, size=k, replace=False):
        side = int(rng.integers(40, half + 1))
        r0 = int(quadrant) // 2 * half + int(rng.integers(0, half - side + 1))
        c0 = int(quadrant) % 2 * half + int(rng.integers(0, half - side + 1))
        img[r0 : r0 + side, c0 : c0 + side] = rng.integers(200, 256)
    return img


def prototypes(seed: int) -> np.ndarray:
    """(len(CLASSES), 64) unit vectors: the anchor signature of each class."""
    v = np.random.default_rng(seed + 7).normal(size=(len(CLASSES), 64))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def anchor_codes(cls: int | None, rng: np.random.Generator, protos: np.ndarray) -> np.ndarray:
    """(16, 64) int8 codes: the class prototype plus noise (cls None: a random direction plus noise)."""
    base = protos[cls] if cls is not None else rng.normal(size=64)
    v = base[None, :] + 0.15 * rng.normal(size=(GRID * GRID, 64))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return quantize(v)


def make_rows(task: str, n: int, split: str, seed: int) -> list[dict[str, Any]]:
    """n rows of schemas.triplet for `task` ('count' | 'anchors'), seeded by (seed, split)."""
    from tests.model.data_fixtures import make_row  # one row builder for tests and benches

    rng = np.random.default_rng([seed, SPLITS[split]])
    protos = prototypes(seed)
    same_image = count_image(0, np.random.default_rng(seed + 11))  # the anchors task: one image for all
    same_codes = anchor_codes(
        None, np.random.default_rng(seed + 13), protos
    )  # the count task: one anchor set
    rows = []
    for i in range(n):
        if task == "count":
            k = int(rng.integers(1, 5))
            png, codes = _png(count_image(k, rng)), same_codes  # the anchors carry nothing here
            caption = f"{k} bright targets."
            qa = [{"task": "counting", "question": COUNT_Q, "answer": str(k)}]
        elif task == "anchors":
            c = int(rng.integers(0, len(CLASSES)))
            png, codes = _png(same_image), anchor_codes(c, rng, protos)
            caption = f"A SAR chip of a {CLASSES[c]} region."
            qa = [{"task": "classification", "question": CLASS_Q, "answer": CLASSES[c]}]
        else:
            raise ValueError(f"unknown learning task {task!r}; use count or anchors")
        row = make_row(f"{task}-{split}-{i:05d}", split, size=SIZE, grid=GRID, codes=codes, qa=qa, seed=i)
        row["image"] = {"bytes": png, "path": f"{row['chip_id']}.png"}
        row["caption"] = caption
        row["messages"] = [{"role": "user", "content": CAPTION_Q}, {"role": "assistant", "content": caption}]
        row["messages"] += [
            m
            for q in qa
            for m in (
                {"role": "user", "content": q["question"]},
                {"role": "assistant", "content": q["answer"]},
            )
        ]
        rows.append(row)
    return rows


def write_task(root: Path, task: str, *, n_train: int, n_test: int, seed: int = 0) -> Path:
    """root/data/part-000.parquet with train / validation / test rows of `task`; returns root."""
    rows = (
        make_rows(task, n_train, "train", seed)
        + make_rows(task, max(8, n_test // 4), "validation", seed)
        + make_rows(task, n_test, "test", seed)
    )
    (root / "data").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=triplet_schema())
    pq.write_table(table, root / "data" / "part-000.parquet", row_group_size=64)
    return root


# == training and scoring ==========================================================================
QA_TASK = {"count": "counting", "anchors": "classification"}


def train_config(
    task: str,
    data: Path,
    out: Path,
    *,
    base: str = "tiny",
    tlm: bool = True,
    steps: tuple[int, int] = (120, 120),
    lr: tuple[float, float] = (3e-3, 2e-3),
    batch_size: int = 8,
    seed: int = 0,
) -> Any:
    """The two-stage TrainConfig of a learning run (stage 1: captions, LoRA + TLM; stage 2: the QA, LoRA)."""
    from model.config import parse_config

    def stage(data_kind: str, n: int, rate: float, train: list[str], tasks: list[str] | None) -> dict:
        st: dict[str, Any] = {
            "data": data_kind,
            "train": train,
            "max_steps": n,
            "lr": rate,
            "warmup_ratio": 0.05,
            "batch_size": batch_size,
            "eval_every": 0,
            "eval_batches": 2,
            "save_every": 0,
            "log_every": 10,
        }
        if tasks:
            st["tasks"] = tasks
        return st

    raw = {
        "base": base,
        "image_size": SIZE,
        "max_length": 256,
        "data": str(data),
        "output_dir": str(out),
        "seed": seed,
        "tlm": {"enabled": tlm},
        "lora": {"r": 8, "alpha": 32, "dropout": 0.0},
        "stage1": stage("caption", steps[0], lr[0], ["lora", "tlm"] if tlm else ["lora"], None),
        "stage2": stage("qa", steps[1], lr[1], ["lora"], [QA_TASK[task]]),
    }
    return parse_config(raw, f"bench.learning {task}")


def exact_match(records: list[dict[str, Any]], name: str) -> float:
    """Share of `name`'s predictions equal to their reference (captions: the whole sentence)."""
    mine = [r for r in records if r["model"] == name]
    return sum(r["prediction"].strip() == r["reference"].strip() for r in mine) / max(1, len(mine))


def learn(
    task: str,
    root: Path,
    *,
    base: str = "tiny",
    tlm: bool = True,
    steps: tuple[int, int] = (120, 120),
    lr: tuple[float, float] = (3e-3, 2e-3),
    batch_size: int = 8,
    n_train: int = 256,
    n_test: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the task's shards, train both stages, evaluate both checkpoints on the test split.

    Returns {stage1: {caption exact match per model + majority}, stage2: {accuracy per model + majority},
    losses: first / last training loss per stage}."""
    from model.eval.baseline import baseline_records, majority_answers
    from model.eval.run import EvalSettings, run_eval
    from model.train import run

    data = root / "data_root"
    if not (data / "data").is_dir():
        write_task(data, task, n_train=n_train, n_test=n_test, seed=seed)
    tag = "tlm" if tlm else "no_tlm"
    cfg = train_config(
        task,
        data,
        root / tag,
        base=base,
        tlm=tlm,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    t0 = time.perf_counter()
    res = run(cfg, stages=("stage1", "stage2"))
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "task": task,
        "tlm": tlm,
        "losses": {k: {"first": r.first_loss, "last": r.last_loss, "steps": r.steps} for k, r in res.items()},
        "train_seconds": round(train_s, 1),
    }
    # stage 1: captions, scored as whole-sentence exact match (the caption states the answer)
    s1 = EvalSettings(
        data=str(data), split="test", tasks=("caption",), batch_size=16, max_new_tokens_caption=48
    )
    run_eval(res["stage1"].final, s1, out=root / f"eval1-{tag}")
    recs = [json.loads(ln) for ln in (root / f"eval1-{tag}" / "predictions.jsonl").read_text().splitlines()]
    maj = majority_answers(str(data), ["caption"])
    recs_all = recs + baseline_records(recs, maj)
    out["stage1"] = {m: exact_match(recs_all, m) for m in sorted({r["model"] for r in recs_all})}
    # stage 2: the QA task through model.eval (TLM / no TLM / majority)
    qa = QA_TASK[task]
    s2 = EvalSettings(data=str(data), split="test", tasks=(qa,), batch_size=16, max_new_tokens_qa=16)
    results = run_eval(res["stage2"].final, s2, out=root / f"eval2-{tag}")
    out["stage2"] = {m: r[qa]["accuracy"] for m, r in results.items()}
    out["n_test"] = sum(r["model"] == "majority" for r in recs_all)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.learning", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--small", action="store_true", help="the tiny width-64 base of model/configs/tiny.yaml (a CPU check)"
    )
    p.add_argument("--width", type=int, default=1024, help="LLM width of the built base (not with --small)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, nargs=2, default=(150, 150), metavar=("STAGE1", "STAGE2"))
    p.add_argument("--lr", type=float, nargs=2, default=(3e-3, 2e-3), metavar=("STAGE1", "STAGE2"))
    p.add_argument("--tasks", nargs="+", default=["count", "anchors"], choices=("count", "anchors"))
    p.add_argument("--work", default="bench/out/learning", help="folder for shards and checkpoints")
    p.add_argument("--out", default="bench/out/learning.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if a.device == "cpu":
        torch.cuda.is_available = lambda: False  # type: ignore[method-assign]  # model.train picks cuda if seen
    work = Path(a.work)
    base = "tiny"
    if not a.small:
        from model.base import build_tiny_base, save_base

        model, processor = build_tiny_base(seed=0, width=a.width, layers=a.layers)
        base = str(work / f"base-{a.width}x{a.layers}")
        save_base(model, processor, base)
        del model
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if a.device == "cuda" else platform.processor() or "cpu",
        "dtype": "bf16 autocast" if a.device == "cuda" else "float32",
        "base": "tiny (width 64, 2 layers)"
        if a.small
        else f"built Qwen2.5-VL width {a.width}, {a.layers} layers",
        "steps": list(a.steps),
        "lr": list(a.lr),
        "torch": torch.__version__,
        "runs": [],
    }
    for task in a.tasks:
        for tlm in (True, False) if task == "anchors" else (True,):
            r = learn(task, work / task, base=base, tlm=tlm, steps=tuple(a.steps), lr=tuple(a.lr))
            print(json.dumps(r), flush=True)
            report["runs"].append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
