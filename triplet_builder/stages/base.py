"""The stage protocol: a small class that maps an iterator of chip records to an iterator of chip records.

Stages never import dask; the executor (pipelines/executor.py) runs the list. Rejected records pass
through every later stage untouched so the writer (the last stage) can put them in the rejects table:
nothing is dropped silently. Every stage counts what it saw, kept and rejected (by reason) and the time
it spent.

Three bases: `Stage` (override `process`, one record at a time, or `run`), `BatchStage` (override
`process_batch`: the base batches, skips rejected records, times and counts), and
`triplet_builder.stages.annotation.AnnotationStage` (a `BatchStage` that adds one namespaced section to
the fact sheet; the base of plugin stages, see docs/adding-a-stage.md). Each declares the fact sections
it `needs` and `provides`; the assembled list is checked for order (triplet_builder/stages/assemble.py).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from triplet_builder.record import ChipRecord


@dataclass
class StageStats:
    seen: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    extra: Counter[str] = field(default_factory=Counter)

    def merge(self, other: StageStats) -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.seconds += other.seconds
        self.extra.update(other.extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "seconds": round(self.seconds, 4),
            **({"extra": dict(sorted(self.extra.items()))} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageStats:
        return cls(
            seen=d["seen"],
            kept=d["kept"],
            rejected=Counter(d.get("rejected", {})),
            seconds=d.get("seconds", 0.0),
            extra=Counter(d.get("extra", {})),
        )


class Stats:
    """Per-stage statistics of one task (or, merged, of a whole run). Insertion order = stage order."""

    def __init__(self) -> None:
        self.stages: dict[str, StageStats] = {}

    def __getitem__(self, name: str) -> StageStats:
        if name not in self.stages:
            self.stages[name] = StageStats()
        return self.stages[name]

    def merge(self, other: Stats) -> None:
        for name, st in other.stages.items():
            self[name].merge(st)

    def to_dict(self) -> dict[str, Any]:
        return {name: st.to_dict() for name, st in self.stages.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        s = cls()
        for name, st in d.items():
            s.stages[name] = StageStats.from_dict(st)
        return s


class Stage:
    """Base class. Override `process` (one record at a time) or `run` (to batch or hold state)."""

    name: ClassVar[str] = "stage"
    needs: ClassVar[tuple[str, ...]] = ()  # fact sections an earlier stage must provide
    provides: ClassVar[tuple[str, ...]] = ()  # fact sections this stage writes

    def process(self, record: ChipRecord) -> ChipRecord:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        st = stats[self.name]
        for record in records:
            if record.rejected:
                yield record
                continue
            t0 = time.perf_counter()
            out = self.process(record)
            st.seconds += time.perf_counter() - t0
            self.account(st, out)
            yield out

    def account(self, st: StageStats, out: ChipRecord) -> None:
        st.seen += 1
        if out.rejected and out.reject_stage == self.name:
            st.rejected[out.reject_reason or "unknown"] += 1
        else:
            st.kept += 1

    def close(self) -> None:
        """Release resources (open files, clients). Called by the executor at the end of a task."""

    def abort(self) -> None:
        """The task failed: discard what this stage staged (the writer's temporary files). Called before
        `close`."""


class BatchStage(Stage):
    """A stage that works on batches of `batch` records: subclasses implement `process_batch` over the
    batch's non-rejected records (in place: set fields, or `record.reject(self.name, reason, detail)`).
    The base batches, skips rejected records (they pass through), times `process_batch` and counts each
    processed record as kept or rejected; records leave in input order."""

    batch: int = 64

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:  # pragma: no cover
        """Process the non-rejected records of one batch (never empty); `st.extra` takes counters."""
        raise NotImplementedError

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        st = stats[self.name]
        it = iter(records)
        while batch := list(itertools.islice(it, self.batch)):
            todo = [r for r in batch if not r.rejected]
            if todo:
                t0 = time.perf_counter()
                self.process_batch(todo, st)
                st.seconds += time.perf_counter() - t0
                for r in todo:
                    self.account(st, r)
            yield from batch


def run_stages(stages: list[Stage], records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
    """Chain the stages lazily; records stream through them one by one (or batch by batch)."""
    it: Iterable[ChipRecord] = records
    for stage in stages:
        it = stage.run(it, stats)
    yield from it
