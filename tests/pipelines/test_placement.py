"""Tasks over the same ground go to the same worker (pipelines/placement.py), the runs are balanced, and a
plan records where each task works."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import shapely

from pipelines.placement import LAT_BAND_DEG, preferred_workers
from pipelines.plan import _window_polygons, plan
from tests.pipelines.test_build import region_file
from triplet_builder.config import load_region


def test_other_dates_of_one_footprint_share_a_worker() -> None:
    # 3 dates x 4 tasks over the same 4 places (2 rows of 2), ids in date order as a plan lays them
    places = [(4.60, 43.42), (4.64, 43.42), (4.60, 43.38), (4.64, 43.38)]
    centres = {d * 4 + k: places[k] for d in range(3) for k in range(4)}
    where = preferred_workers(list(centres), centres, 2)
    for k in range(4):  # a place's three dates: one worker
        assert len({where[d * 4 + k] for d in range(3)}) == 1
    assert Counter(where.values()) == {0: 6, 1: 6}
    # north before south, then west before east: the northern row on worker 0
    assert {where[k] for k in (0, 1)} == {0} and {where[k] for k in (2, 3)} == {1}


def test_within_a_band_of_latitude_west_comes_first() -> None:
    # one row of 4 places, given east to west: the two western places make the first run
    centres = {0: (4.72, 43.40), 1: (4.68, 43.401), 2: (4.64, 43.402), 3: (4.60, 43.40)}
    assert preferred_workers([0, 1, 2, 3], centres, 2) == {3: 0, 2: 0, 1: 1, 0: 1}


@pytest.mark.parametrize("n_tasks, n_workers", [(1, 1), (7, 2), (9, 4), (3, 8), (100, 3)])
def test_runs_differ_by_at_most_one_task(n_tasks: int, n_workers: int) -> None:
    centres = {t: (4.0 + 0.013 * (t % 7), 43.0 + LAT_BAND_DEG * (t // 7)) for t in range(n_tasks)}
    where = preferred_workers(list(range(n_tasks)), centres, n_workers)
    assert set(where) == set(range(n_tasks))
    counts = Counter(where.values())
    assert set(counts) <= set(range(n_workers))
    used = [counts.get(w, 0) for w in range(n_workers)]
    assert max(used) - min(used) <= 1


def test_tasks_without_a_centre_come_last_and_zero_workers_is_refused() -> None:
    centres = {0: (4.6, 43.4), 2: (4.7, 43.4), 3: (float("nan"), 43.4)}
    where = preferred_workers([0, 1, 2, 3], centres, 2)
    assert where == {0: 0, 2: 0, 1: 1, 3: 1}
    with pytest.raises(ValueError, match="n_workers"):
        preferred_workers([0], centres, 0)


def test_the_plan_records_where_each_task_works(tmp_path: Path) -> None:
    cfg = load_region(region_file(tmp_path, chips_per_task=20))
    p = plan(cfg)
    assert len(p.tasks) > 2 and set(p.task_centres) == {t.task_id for t in p.tasks}
    for t in p.tasks:  # inside the bounds of the task's own windows
        lon, lat = p.task_centres[t.task_id]
        x0, y0, x1, y1 = shapely.union_all(_window_polygons(t.scene, list(t.windows))).bounds
        assert x0 < lon < x1 and y0 < lat < y1
    assert len(set(p.task_centres.values())) > 1
