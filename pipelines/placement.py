"""Which worker a task should run on: tasks over the same ground on the same worker.

A worker process keeps the AlphaEarth blocks it has read (triplet_builder/embeddings/block_cache.py), so
the tasks of other dates over one footprint, or of neighbouring windows, cost no second read there; dealt
round-robin, every worker reads every block of the footprint (from a remote mirror: downloads it). The
tasks are ordered by where they work (bands of latitude from north to south, west to east within a band)
and cut into one run per worker, of equal task counts. Where a run ends mid-footprint, that footprint's
blocks are read on two workers.

A preference only: the executor submits each task with its worker and `allow_other_workers`, so Dask's
work stealing still evens out the load, and where a task runs never changes its rows. Longitudes are
averaged naively: across the antimeridian a task's centre is wrong and only its placement suffers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

LAT_BAND_DEG = 0.02  # about 2.2 km: tasks whose centres fall in one band are ordered west to east


def preferred_workers(
    task_ids: Sequence[int], centres: Mapping[int, tuple[float, float]], n_workers: int
) -> dict[int, int]:
    """Worker index (0 .. n_workers - 1) of each task id: the tasks in ground order (see the module
    docstring), cut into `n_workers` runs whose sizes differ by at most one. A task without a centre
    keeps its place in the id order, after the placed ones."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")

    def ground(t: int) -> tuple[float, float, int]:
        c = centres.get(t)
        if c is None or not (math.isfinite(c[0]) and math.isfinite(c[1])):
            return (math.inf, math.inf, t)
        return (-math.floor(c[1] / LAT_BAND_DEG), c[0], t)

    order = sorted(task_ids, key=ground)
    n = len(order)
    return {t: min(i * n_workers // max(n, 1), n_workers - 1) for i, t in enumerate(order)}


__all__ = ["LAT_BAND_DEG", "preferred_workers"]
