"""Write stage, the last of every stage list: kept chips to the task's GeoParquet shards, rejected chips
(with their stage and reason) to its rejects table, through one `ShardWriter`.

The shards appear under their final names only when every record has passed and the writer is closed
(temporary files, then renames, at the end of `run`); a task that fails calls `abort`, which leaves
nothing of it on disk. `written` is the writer's summary once `run` has finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage, Stats
from triplet_builder.writers.parquet import ShardWriter


class Write(Stage):
    name = "write"

    def __init__(self, writer: ShardWriter) -> None:
        self.writer = writer
        self.written: dict[str, Any] | None = None

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        st = stats[self.name]
        for rec in records:
            t0 = time.perf_counter()
            if rec.rejected:
                self.writer.reject(rec)
            else:
                self.writer.write(rec)
                st.seen += 1
                st.kept += 1
            st.seconds += time.perf_counter() - t0
            yield rec
        t0 = time.perf_counter()
        self.written = self.writer.close()
        st.seconds += time.perf_counter() - t0

    def abort(self) -> None:
        self.writer.abort()  # nothing of this task reaches a final name
