"""Evaluate a checkpoint: generate answers on a split's QA and captions and score them with
model.eval.metrics, with the TLM fed its anchors ("TLM") and with every anchor withheld ("no TLM", the same
weights without AlphaEarth), plus an optional baseline checkpoint (e.g. a model trained without a TLM), beside
the majority-answer baseline ("majority": always the task's most common training answer, model.eval.baseline).

    python -m model.eval --checkpoint DIR [--data DIR] [--split test] [--baseline DIR] [--limit N]

Writes <out>/predictions.jsonl (id, task, model, prediction, reference), <out>/results.json and
<out>/report.md (model.eval.metrics.report_table), and prints the table. When the data's anchors are the
demo's SYNTHETIC stand-in (`synthetic_anchors`), it says that TLM vs no-TLM differences mean nothing
(a warning line, a line of report.md, and `"anchors_synthetic": true` in results.json). <out> defaults to <checkpoint>/eval-<split>.
Greedy decoding; samples are read in a fixed order (no shuffling), so two runs are identical.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.collate import reference_answer
from model.data import Sample, ShardDataset, _resolve_files
from model.eval.baseline import baseline_records, majority_answers
from model.eval.metrics import evaluate, report_table
from model.predict import generate, load_for_inference
from model.release import ReleaseDataset

logger = logging.getLogger("model.eval")

SYNTHETIC_ANCHORS_WARNING = (
    "anchors are SYNTHETIC (demo stand-in): TLM vs no-TLM differences on this data mean nothing"
)


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate on and how long answers may be."""

    data: str
    split: str = "test"
    tasks: tuple[str, ...] = ("caption", "counting", "localization", "detection", "classification")
    batch_size: int = 8
    limit: int | None = None  # samples per stage (captions / QA), for quick looks
    max_new_tokens_qa: int = 128
    max_new_tokens_caption: int = 512


def eval_samples(s: EvalSettings, image_size: int) -> Iterator[Sample]:
    """Captions then QA of the split, in file order (shuffle_buffer 0), each stage capped at s.limit.

    `data` ending in .jsonl is the FUSAR-GPT release format (model.release.ReleaseDataset: its demo images with
    detection labels); its lines' tasks are guessed from the questions and filtered by s.tasks."""
    if s.data.endswith(".jsonl"):
        release = ReleaseDataset(s.data, image_size=image_size, split=s.split)
        kept = (x for x in release if x.task in s.tasks)
        for i, sample in enumerate(kept):
            if s.limit is not None and i >= s.limit:
                break
            yield sample
        return
    qa_tasks = [t for t in s.tasks if t != "caption"]
    stages: list[tuple[str, list[str] | None]] = []
    if "caption" in s.tasks:
        stages.append(("caption", None))
    if qa_tasks:
        stages.append(("qa", qa_tasks))
    for stage, tasks in stages:
        ds = ShardDataset(
            s.data, split=s.split, stage=stage, tasks=tasks, image_size=image_size, shuffle_buffer=0
        )
        for i, sample in enumerate(ds):
            if s.limit is not None and i >= s.limit:
                break
            yield sample


def synthetic_anchors(data: str) -> bool:
    """Whether the anchors of `data` are a synthetic stand-in: a shard row with `aef_synthetic` true, or a
    dataset folder whose manifest.json says `synthetic_embeddings`. A release .jsonl carries no flag."""
    if data.endswith(".jsonl"):
        return False
    manifest = Path(data) / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("synthetic_embeddings") is True:
        return True
    for f in _resolve_files(data):
        if "aef_synthetic" in pq.read_schema(f).names:
            if pc.any(pq.read_table(f, columns=["aef_synthetic"])["aef_synthetic"]).as_py():
                return True
    return False


def predict_records(
    model: Any,
    processor: Any,
    samples: list[Sample],
    s: EvalSettings,
    *,
    name: str,
    use_anchors: bool,
    max_length: int,
) -> list[dict[str, Any]]:
    """Generate for every sample (batched by task: captions need longer answers) -> evaluation records."""
    records: list[dict[str, Any]] = []
    for task in sorted({x.task for x in samples}):
        group = [x for x in samples if x.task == task]
        budget = s.max_new_tokens_caption if task == "caption" else s.max_new_tokens_qa
        for i in range(0, len(group), s.batch_size):
            chunk = group[i : i + s.batch_size]
            answers = generate(
                model, processor, chunk, max_new_tokens=budget, max_length=max_length, use_anchors=use_anchors
            )
            for x, a in zip(chunk, answers, strict=True):
                records.append(
                    {
                        "id": x.id,
                        "task": x.task,
                        "model": name,
                        "prediction": a,
                        "reference": reference_answer(x),
                    }
                )
    return records


def run_eval(
    checkpoint: str | Path,
    s: EvalSettings,
    *,
    baseline: str | Path | None = None,
    out: str | Path | None = None,
    base: str | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score the checkpoint with and without its anchors (and the baseline); write and return the results.

    base: the base model of a checkpoint in the release's layout (default: its adapter config's)."""
    ckpt = Path(checkpoint)
    out_dir = Path(out) if out else ckpt / f"eval-{s.split}"
    model, processor, cfg = load_for_inference(ckpt, base=base)
    samples = list(eval_samples(s, cfg.image_size))
    if not samples:
        raise ValueError(
            f"split {s.split!r} of {s.data} holds no samples of tasks {list(s.tasks)}; pick another split"
        )
    logger.info("evaluating %s on %d samples of %s/%s", ckpt, len(samples), s.data, s.split)
    runs: list[tuple[str, Any, Any, bool, int]] = []
    if model.tlm is not None:
        runs += [
            ("TLM", model, processor, True, cfg.max_length),
            ("no TLM", model, processor, False, cfg.max_length),
        ]
    else:
        runs.append(("model", model, processor, False, cfg.max_length))
    if baseline is not None:
        bmodel, bproc, bcfg = load_for_inference(baseline)
        runs.append(("baseline", bmodel, bproc, True, bcfg.max_length))
    records: list[dict[str, Any]] = []
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, m, proc, anchors, max_length in runs:
        recs = predict_records(m, proc, samples, s, name=name, use_anchors=anchors, max_length=max_length)
        results[name] = evaluate(recs)
        records += recs
    # beside every score: always answering the task's most common training answer
    majority = majority_answers(s.data, {x.task for x in samples})
    if majority:
        results["majority"] = evaluate(baseline_records(records, majority))
    table = report_table(results)
    synthetic = synthetic_anchors(s.data)
    if synthetic:
        logger.warning(SYNTHETIC_ANCHORS_WARNING)
        table = f"**{SYNTHETIC_ANCHORS_WARNING}**\n\n{table}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out_dir / "results.json").write_text(
        json.dumps({**results, "anchors_synthetic": synthetic}, indent=2, sort_keys=True) + "\n"
    )
    (out_dir / "report.md").write_text(f"Checkpoint `{ckpt}`, data `{s.data}`, split `{s.split}`.\n\n{table}")
    logger.info("wrote %s", out_dir)
    return results
