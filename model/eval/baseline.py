"""The majority-answer baseline: the score of always answering the most common TRAINING answer of a task.

A score means little without it (on a 4-class task, 25 % may be the floor, or 60 % may be what one constant
answer earns). `majority_answers` reads the training split's answers from the shards' small columns only
(no image is decoded); `baseline_records` turns them into evaluation records scored like any model's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data import ShardDataset


def answer_counts(data: str, tasks: Iterable[str], split: str = "train") -> dict[str, Counter[str]]:
    """{task: Counter of the split's reference answers} for shard data, or for a release .jsonl (every
    line, tasks guessed from the questions: the release has no split)."""
    wanted = set(tasks)
    counts: dict[str, Counter[str]] = {t: Counter() for t in wanted}
    if data.endswith(".jsonl"):
        from model.release import guess_task

        for line in Path(data).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                task = guess_task(str(rec["question"]))
                if task in wanted:
                    counts[task][str(rec["answer"])] += 1
        return counts
    for path in ShardDataset(data, split=split, stage="caption").files:
        table = pq.read_table(path, columns=["split", "messages", "qa"])
        table = table.filter(pc.equal(table.column("split"), split))
        if "caption" in wanted:
            for messages in table.column("messages").to_pylist():
                if len(messages) >= 2 and messages[1]["role"] == "assistant":
                    counts["caption"][messages[1]["content"]] += 1
        for items in table.column("qa").to_pylist():
            for item in items or ():
                if item["task"] in wanted:
                    counts[item["task"]][item["answer"]] += 1
    return counts


def majority_answers(data: str, tasks: Iterable[str], split: str = "train") -> dict[str, str]:
    """{task: the most common answer of the split} (ties: the first in sorted order); tasks without any
    training answer are left out."""
    out = {}
    for task, counter in answer_counts(data, tasks, split).items():
        if counter:
            best = max(counter.values())
            out[task] = min(a for a, n in counter.items() if n == best)
    return out


def baseline_records(
    records: Iterable[Mapping[str, Any]], majority: Mapping[str, str], *, name: str = "majority"
) -> list[dict[str, Any]]:
    """One record per distinct (id, task) of `records`, predicting the task's majority training answer."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        task = str(r["task"])
        if task in majority and (r["id"], task) not in out:
            out[(r["id"], task)] = {
                "id": r["id"],
                "task": task,
                "model": name,
                "prediction": majority[task],
                "reference": r["reference"],
            }
    return list(out.values())


__all__ = ["answer_counts", "baseline_records", "majority_answers"]
