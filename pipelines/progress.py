"""Per-stage progress of a running build: one bar per stage, moved by THAT stage's own work.

Tasks report their cumulative per-stage statistics while they run (`run_task(report=...)`; the executor
carries the reports from the workers as Dask events). Each report REPLACES the task's previous one, so a
late, repeated or lost report cannot count anything twice: a finished task's final statistics replace its
last report, and reports that arrive after it are ignored.

A stage's bar counts the chips it worked on (`seen`) out of the chips that can still reach it: the windows,
less those of failed tasks and those rejected by an earlier stage. That total shrinks as earlier stages
reject, so at the end every bar is full and its count is the manifest's `seen` for that stage; `kept` and
`rejected` ride beside it. The bars render with tqdm (counts, rate and ETA) on stderr; `bars=False` keeps
the counts without drawing (quiet mode, tests).

Reports come from the Dask client's event thread while the driver's thread records finished tasks: one
lock guards the counts and the bars.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from tqdm.auto import tqdm

from triplet_builder.stages.base import Stats

BAR_FORMAT = "{desc}: {n}/{total} chips [{elapsed}<{remaining}, {rate_fmt}]{postfix}"


@dataclass(frozen=True)
class StageCount:
    """What one stage's bar shows."""

    seen: int
    kept: int
    rejected: int
    total: int  # the chips that can still reach the stage


class StageProgress:
    """The per-stage counts of one build, from the tasks' reports; optionally drawn as tqdm bars."""

    def __init__(
        self, names: Sequence[str], windows: int, *, bars: bool = True, file: IO[str] | None = None
    ) -> None:
        self.names = list(names)
        self.windows = windows
        self._lock = threading.Lock()
        self._running: dict[int, Stats] = {}  # the latest report of each task in flight
        self._done: set[int] = set()
        self._finished = Stats()  # the final statistics of finished tasks, merged
        self._failed_windows = 0
        self._bars: dict[str, Any] = {}
        self._file = file or sys.stderr
        if bars:
            width = max((len(n) for n in self.names), default=0)
            for i, name in enumerate(self.names):
                self._bars[name] = tqdm(
                    total=windows,
                    desc=f"{name:>{width}}",
                    unit="chip",
                    position=i,
                    leave=True,
                    file=self._file,
                    bar_format=BAR_FORMAT,
                    smoothing=0,  # the build's average rate: reports come in bursts
                    dynamic_ncols=True,
                )

    def report(self, task_id: int, stats: dict[str, Any]) -> None:
        """A running task's cumulative statistics (Stats.to_dict); ignored once the task has finished."""
        with self._lock:
            if task_id in self._done:
                return
            self._running[task_id] = Stats.from_dict(stats)
            self._draw()

    def finish(self, task_id: int, stats: dict[str, Any]) -> None:
        """A finished task (or one reused from an earlier run): its final statistics count, once."""
        with self._lock:
            if task_id in self._done:
                return
            self._done.add(task_id)
            self._running.pop(task_id, None)
            self._finished.merge(Stats.from_dict(stats))
            self._draw()

    def fail(self, task_id: int, windows: int) -> None:
        """A failed task: what it reported no longer counts, and its windows reach no stage."""
        with self._lock:
            if task_id in self._done:
                return
            self._done.add(task_id)
            self._running.pop(task_id, None)
            self._failed_windows += windows
            self._draw()

    def counts(self) -> dict[str, StageCount]:
        """Each stage's count now, in stage order."""
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, StageCount]:
        merged = Stats()
        merged.merge(self._finished)
        for running in self._running.values():
            merged.merge(running)
        out: dict[str, StageCount] = {}
        reachable = self.windows - self._failed_windows
        for name in self.names:
            st = merged[name]
            rejected = sum(st.rejected.values())
            out[name] = StageCount(st.seen, st.kept, rejected, reachable)
            reachable -= rejected  # what this stage rejected never reaches the next ones
        return out

    def _draw(self) -> None:
        if not self._bars:
            return
        for name, c in self._counts().items():
            bar = self._bars[name]
            bar.total = c.total
            if c.seen != bar.n:
                bar.update(c.seen - bar.n)  # through update(): tqdm's rate and ETA follow
            bar.set_postfix_str(f"kept {c.kept}, rejected {c.rejected}", refresh=False)
            bar.refresh()

    def say(self, line: str, emit: Callable[[str], None]) -> None:
        """Print one line (`emit` prints it) above the bars without tearing them."""
        with self._lock:
            if not self._bars:
                emit(line)
                return
            with tqdm.external_write_mode(file=self._file):
                emit(line)

    def close(self) -> None:
        with self._lock:
            self._draw()
            for bar in self._bars.values():
                bar.close()
            self._bars = {}


__all__ = ["BAR_FORMAT", "StageCount", "StageProgress"]
