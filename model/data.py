"""The trainer's data readers: triplet Parquet shards (`ShardDataset`) and the FUSAR-GPT release's JSONL + .npz
format (`ReleaseDataset`), both yielding the same `Sample`.

`ShardDataset` streams the shards ROW GROUP by row group (only the needed columns, one row group in memory at a
time, plus the shuffle buffer), keeps only the requested split (the `split` column written by the builder:
spatially blocked, never re-split here), shards the row groups over ranks x DataLoader workers without overlap,
and resumes exactly from `state_dict()`.

Stream order (what "exact resume" refers to). For one epoch e:
  1. units = the row groups that can hold the split (row-group statistics of `split` skip the others), in file
     order; when there are fewer units than consumers (ranks x workers) every row group is cut into equal
     contiguous row slices so that every consumer gets work.
  2. with shuffling (shuffle_buffer > 0) the units are permuted by a generator seeded with (seed, e).
  3. consumer c = rank * num_workers + worker takes units c, c + C, c + 2C, ... (C = world_size * num_workers):
     every row is read by exactly one consumer per epoch.
  4. a consumer expands its rows into samples (caption: one per chip; qa: one per QA item of the tasks) and
     passes them through a shuffle buffer seeded with (seed, e, c, C).
A rank's stream is its consumers' streams as the DataLoader delivers them: batches round-robin over the workers
(torch's in-order default), skipping a worker once it is exhausted. `state_dict()` stores (epoch, offset =
samples of the rank's stream consumed since the start of that epoch); on resume every consumer recomputes how
many of its own samples were consumed and skips them without decoding images.

This module deals the stream out; its parts live beside it: the `Sample` type and how a shard row becomes
samples in model/samples.py, the image preparation (`resize_image`) in model/images.py, finding, reading
and fingerprinting the shard files in model/shard_files.py, and the resume point in model/stream_position.py.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from model.images import resize_image  # re-exported: the readers' image preparation
from model.samples import Sample, _Row, _Spec, materialise, table_rows
from model.shard_files import _resolve_files, fingerprint, split_row_groups
from model.stream_position import StreamPosition
from model.stream_position import _round_robin_skip as _round_robin_skip  # re-exported
from schemas import QA_TASKS, SPLITS
from schemas.codec import to_rgb  # the chip codec's PNG -> RGB, re-exported for the trainer's callers
from schemas.frames import (  # the box conventions, shared with the builder's exports
    rescale_boxes_in_text,
    rescale_detection_answer,
    rescale_qa,
)

log = logging.getLogger(__name__)

STAGES = ("caption", "qa")
TASKS = ("caption", *QA_TASKS)


# == the shard reader ==============================================================================
@dataclass(frozen=True)
class _Unit:
    """A slice of one row group: the work item dealt to a consumer."""

    file: int
    row_group: int
    start: int  # first row of the slice within the row group
    stop: int


_BASE_COLUMNS = ("chip_id", "split", "image", "aef_codes", "aef_valid", "aef_positions")
_REQUIRED = (*_BASE_COLUMNS, "messages", "qa")


class ShardDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Stream `Sample`s from triplet Parquet shards, row group by row group (see the module docstring).

    epochs: how many epochs one iteration (a "run") yields, from epoch set_epoch(e) on (default 0; None =
    forever). Iterating again repeats the run (like DistributedSampler without set_epoch), except right after
    load_state_dict, when the iteration continues from the loaded point to the end of the run.
    shuffle_buffer 0 = no shuffling at all (row groups in file order, samples in row order: evaluation order).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        split: str = "train",
        stage: str = "caption",
        tasks: Sequence[str] | None = None,
        image_size: int | tuple[int, int] = 504,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epochs: int | None = 1,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"ShardDataset: split must be one of {SPLITS}, got {split!r}")
        if stage not in STAGES:
            raise ValueError(f"ShardDataset: stage must be one of {STAGES}, got {stage!r}")
        if stage == "caption" and tasks is not None:
            raise ValueError("ShardDataset: tasks apply to stage 'qa' only; drop tasks for stage 'caption'")
        bad = [t for t in tasks or () if t not in QA_TASKS]
        if bad:
            raise ValueError(f"ShardDataset: unknown task(s) {bad}; choose from {QA_TASKS}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"ShardDataset: need 0 <= rank < world_size, got rank={rank} world_size={world_size}"
            )
        if shuffle_buffer < 0:
            raise ValueError(f"ShardDataset: shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"ShardDataset: epochs must be >= 1 or None, got {epochs}")
        self.files = _resolve_files(source)
        self.split, self.stage = split, stage
        self.tasks: tuple[str, ...] = tuple(tasks) if tasks else (QA_TASKS if stage == "qa" else ())
        self.image_size = image_size
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self._row_groups = self._plan()
        self._position = StreamPosition()  # the resume point (model/stream_position.py)
        self._fingerprint: dict[str, Any] | None = None

    # -- planning (metadata only) --------------------------------------------------------------------
    def _plan(self) -> list[tuple[int, int, int]]:
        """(file, row group, rows) of every row group that may hold the split, from the footers only."""
        out = split_row_groups(self.files, self.split, required=_REQUIRED)
        log.debug("%d file(s), %d row group(s) may hold split %s", len(self.files), len(out), self.split)
        return out

    def _units(self, epoch: int, consumers: int) -> list[_Unit]:
        """This epoch's units in stream order (step 1-2 of the module docstring)."""
        units: list[_Unit] = []
        n = len(self._row_groups)
        parts = max(1, math.ceil(consumers / n)) if n else 1
        for f, rg, rows in self._row_groups:
            bounds = np.linspace(0, rows, min(parts, rows) + 1).round().astype(int)
            units += [_Unit(f, rg, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        if self.shuffle_buffer > 0:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(units))
            units = [units[i] for i in order]
        return units

    # -- reading -------------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The only columns ever read."""
        return [*_BASE_COLUMNS, "messages" if self.stage == "caption" else "qa"]

    def _read(self, unit: _Unit, columns: list[str]) -> pa.Table:
        """One row group (only `columns`), sliced to the unit and filtered to the split."""
        table = pq.ParquetFile(self.files[unit.file]).read_row_group(unit.row_group, columns=columns)
        table = table.slice(unit.start, unit.stop - unit.start)
        return table.filter(pc.equal(table.column("split"), self.split))

    def _rows(self, unit: _Unit) -> Iterator[_Row]:
        # the table gets no name here: table_rows drops it once its columns are extracted
        yield from table_rows(self._read(unit, self.columns), self.files[unit.file], self.stage, self.tasks)

    def _count(self, unit: _Unit) -> int:
        """How many samples a unit yields, reading only the small columns (used to map resume offsets)."""
        table = self._read(unit, ["split", "messages" if self.stage == "caption" else "qa"])
        if self.stage == "caption":
            return int(table.num_rows)
        if not table.num_rows:
            return 0
        tasks = pc.struct_field(pc.list_flatten(table.column("qa")), "task")  # (items,) of the kept rows
        return int(pc.sum(pc.is_in(tasks, value_set=pa.array(self.tasks))).as_py() or 0)

    def _specs(self, epoch: int, consumer: int, consumers: int) -> Iterator[_Spec]:
        """The consumer's samples of one epoch, in stream order, before the shuffle buffer."""
        for unit in self._units(epoch, consumers)[consumer::consumers]:
            for row in self._rows(unit):
                for j in range(len(row.texts)):
                    yield _Spec(row, j)

    def _shuffled(self, specs: Iterator[_Spec], epoch: int, consumer: int, consumers: int) -> Iterator[_Spec]:
        """A seeded shuffle buffer: deterministic for (seed, epoch, consumer, consumers)."""
        if self.shuffle_buffer <= 1:
            yield from specs
            return
        rng = random.Random(f"{self.seed}/{epoch}/{consumer}/{consumers}")
        buf: list[_Spec] = []
        for spec in specs:
            if len(buf) < self.shuffle_buffer:
                buf.append(spec)
                continue
            i = rng.randrange(len(buf))
            yield buf[i]
            buf[i] = spec
        rng.shuffle(buf)
        yield from buf

    # -- iteration -----------------------------------------------------------------------------------
    @property
    def end_epoch(self) -> int | None:
        """The epoch the current run stops before (None = never): run start + epochs."""
        return None if self.epochs is None else self._position.run_start + self.epochs

    def _epoch_range(self, start: int) -> Iterable[int]:
        e = start
        while self.end_epoch is None or e < self.end_epoch:
            yield e
            e += 1

    def consumer_stream(self, start_epoch: int, consumer: int, consumers: int) -> Iterator[tuple[int, _Spec]]:
        """(epoch, spec) of one consumer from start_epoch to the end of the run, across epochs."""
        for epoch in self._epoch_range(start_epoch):
            for spec in self._shuffled(self._specs(epoch, consumer, consumers), epoch, consumer, consumers):
                yield epoch, spec

    def _consumer_length(self, start_epoch: int, consumer: int, consumers: int) -> float:
        if self.end_epoch is None:
            return math.inf
        return sum(
            self._count(u)
            for e in range(start_epoch, self.end_epoch)
            for u in self._units(e, consumers)[consumer::consumers]
        )

    def _resume_plan(
        self, epoch: int, offset: int, num_workers: int, in_worker: bool
    ) -> tuple[list[int], int]:
        """Per worker role, how many of its samples the resume offset already consumed, and the role whose
        batch comes next (StreamPosition.worker_skips)."""
        consumers = self.world_size * num_workers
        return self._position.worker_skips(
            offset,
            num_workers,
            in_worker,
            lambda: [
                self._consumer_length(epoch, self.rank * num_workers + w, consumers)
                for w in range(num_workers)
            ],
        )

    def __iter__(self) -> Iterator[Sample]:
        """From the loaded resume point when load_state_dict was called since the last iteration, else from
        the start of the run (set_epoch): iterating twice without either repeats the same order."""
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        main = info is None
        pos = self._position
        epoch0, offset0 = (pos.epoch, pos.offset) if pos.pending else (pos.run_start, 0)
        if main:
            pos.pending = False
            pos.epoch, pos.offset = epoch0, offset0
        taken, first = self._resume_plan(epoch0, offset0, num_workers, not main)
        role = (worker + first) % num_workers
        consumers = self.world_size * num_workers
        consumer = self.rank * num_workers + role
        skip = taken[role]
        current = epoch0
        for n, (epoch, spec) in enumerate(self.consumer_stream(epoch0, consumer, consumers)):
            if n < skip:
                continue
            sample = materialise(spec, self.image_size)
            if main:  # the main process sees exactly what is consumed: keep the resume point current
                if epoch != current:
                    pos.epoch, pos.offset, current = epoch, 0, epoch
                pos.offset += 1
            yield sample
        if main and self.end_epoch is not None:  # the run is complete: its end is the position
            pos.epoch, pos.offset = self.end_epoch, 0

    # -- resume (the position: model/stream_position.py) -------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start the next run (of `epochs` epochs) at the beginning of `epoch`, like
        DistributedSampler.set_epoch (the shuffle depends on the epoch)."""
        self._position.start_run(epoch)

    def state_dict(
        self, *, consumed: int | None = None, batch_size: int | None = None, num_workers: int = 0
    ) -> dict[str, Any]:
        """The resume point: epoch + offset into the rank's stream.

        Without arguments: what this object yielded in the main process (DataLoader num_workers=0; exact).
        With DataLoader workers the main process cannot see them, so pass consumed = samples the loop took
        since the start of the current epoch (set_epoch / last resume), with the DataLoader's batch_size and
        num_workers (torch's in-order delivery, drop_last=False).
        """
        return self._position.state_dict(
            self._settings(), self._digest, consumed=consumed, batch_size=batch_size, num_workers=num_workers
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields exactly the samples not yet consumed, in the same order."""
        self._position.load_state_dict(state, self._settings(), self._digest)

    def _settings(self) -> dict[str, Any]:
        """What a resume point is only valid for (besides the data): the stream's sharding and shuffling."""
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
        }

    def _digest(self) -> str:
        return str(self.fingerprint()["digest"])

    # -- provenance ----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint stores to say which data trained it: every file (name, size, footer SHA-256,
        rows), the schema version, the split / stage / tasks / image size, and one digest over all of it
        (model/shard_files.py); computed once."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(
                self.files, split=self.split, stage=self.stage, tasks=self.tasks, image_size=self.image_size
            )
        return self._fingerprint


__all__ = [
    "STAGES",
    "TASKS",
    "Sample",
    "ShardDataset",
    "rescale_boxes_in_text",
    "rescale_detection_answer",
    "rescale_qa",
    "resize_image",
    "to_rgb",
]
