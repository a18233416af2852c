"""Per-stage progress without Dask: a real task's own reports (run_task(report=...)) move each stage's count
by that stage's work, and the tracker (pipelines/progress.py) turns reports, finished and failed tasks into
bars whose final counts are the merged statistics; `--limit` plans (pipelines/limit.py)."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines.limit import limit_plan, refuse_loss
from pipelines.plan import BuildError, plan
from pipelines.progress import StageProgress
from pipelines.stages import TaskSpec, run_task
from tests.conftest import PORT_TILE, ROOT
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.stages.assemble import stage_names
from triplet_builder.stages.base import Stats

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
NAMES = list(stage_names())


def _cfg(tmp: Path, **over: Any) -> RegionConfig:
    return load_region(
        DEMO,
        {"scenes.paths": [str(PORT_TILE)], "output.dir": str(tmp / "out"), "workers": 1, **over},
    )


@pytest.fixture(scope="module")
def reported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TaskSpec, list[dict[str, Any]], dict[str, Any]]:
    """One real task of the demo tile (screen rejecting the flattest chips), reporting after every record."""
    cfg = _cfg(tmp_path_factory.mktemp("progress"), **{"filter.min_std_db": 3.5})
    (task,) = plan(cfg).tasks
    reports: list[dict[str, Any]] = []
    res = run_task(task, cfg, report=lambda s: reports.append(json.loads(json.dumps(s))), report_every_s=0)
    return task, reports, res


def test_a_task_reports_each_stage_by_its_own_work(
    reported: tuple[TaskSpec, list[dict[str, Any]], dict[str, Any]],
) -> None:
    task, reports, res = reported
    final = res["stats"]
    assert final["screen"]["seen"] > final["screen"]["kept"] > 0  # the screen rejected some
    assert len(reports) >= 2
    for snap in reports:  # a chip reaches a stage only once the stage before kept it
        for before, after in itertools.pairwise(NAMES):
            if after in snap:
                assert snap[after]["seen"] <= snap.get(before, {"kept": 0})["kept"], (before, after, snap)
        for name, st in snap.items():
            assert st["seen"] <= final[name]["seen"] and st["kept"] <= final[name]["kept"]
    # the first stage runs ahead of the last (batch stages pull 64 windows before they emit one)
    assert any(s["tile"]["seen"] > s.get("write", {"seen": 0})["seen"] for s in reports)
    assert reports[0]["write"]["seen"] < final["write"]["seen"]  # progress arrived before the end
    assert final["tile"]["seen"] == len(task.windows)


def _bars(text: str) -> dict[str, tuple[int, int, int, int]]:
    """The last state of each stage's bar: (n, total, kept, rejected)."""
    last: dict[str, tuple[int, int, int, int]] = {}
    for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)):
        m = re.match(r"\s*([\w-]+): (\d+)/(\d+) chips .*kept (\d+), rejected (\d+)", line)
        if m:
            last[m.group(1)] = tuple(int(g) for g in m.groups()[1:])  # type: ignore[assignment]
    return last


def test_the_tracker_counts_each_report_once(
    reported: tuple[TaskSpec, list[dict[str, Any]], dict[str, Any]],
) -> None:
    task, reports, res = reported
    n = len(task.windows)
    i = NAMES.index("screen")  # a task whose screen rejected 6 of its 10 windows
    small: dict[str, Any] = {s: {"seen": 10, "kept": 10} for s in NAMES[:i]}
    small["screen"] = {"seen": 10, "kept": 4, "rejected": {"featureless": 6}}
    small |= {s: {"seen": 4, "kept": 4} for s in NAMES[i + 1 :]}
    out = io.StringIO()
    tr = StageProgress(NAMES, 3 * n + 10, file=out)
    mid = reports[len(reports) // 2]
    tr.report(0, mid)
    tr.report(0, mid)  # a repeated report replaces, never adds
    assert tr.counts()["tile"].seen == mid["tile"]["seen"]
    tr.report(1, mid)  # a second task in flight adds its own
    assert tr.counts()["tile"].seen == 2 * mid["tile"]["seen"]
    tr.finish(0, res["stats"])
    tr.report(0, mid)  # late, after the task finished: ignored
    tr.fail(1, n)  # what task 1 reported no longer counts; its windows reach no stage
    tr.finish(2, res["stats"])
    tr.finish(3, small)
    c = tr.counts()
    merged = Stats()
    for st in (res["stats"], res["stats"], small):
        merged.merge(Stats.from_dict(st))
    for name in NAMES:
        assert (c[name].seen, c[name].kept) == (merged[name].seen, merged[name].kept), name
    # each stage's total: the windows of tasks not failed, less what earlier stages rejected
    assert c["tile"].total == 2 * n + 10
    rejected_before_screen = sum(c[s].rejected for s in NAMES[: NAMES.index("screen")])
    assert c["screen"].total == 2 * n + 10 - rejected_before_screen == c["screen"].seen
    assert all(c[s].seen == c[s].total for s in NAMES)  # all done: every bar is full
    tr.close()
    bars = _bars(out.getvalue())
    assert {k: v for k, v in bars.items()} == {
        s: (c[s].seen, c[s].total, c[s].kept, c[s].rejected) for s in NAMES
    }
    assert bars["screen"][0] > bars["facts"][0]  # the screen's rejects never reach the facts stage


def test_quiet_tracker_draws_nothing() -> None:
    out = io.StringIO()
    tr = StageProgress(NAMES, 5, bars=False, file=out)
    tr.finish(0, {"tile": {"seen": 5, "kept": 5}})
    tr.close()
    assert out.getvalue() == "" and tr.counts()["tile"].seen == 5


def test_limit_cuts_the_plan_and_keeps_whole_tasks(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, chips_per_task=10)
    p = plan(cfg)
    assert len(p.tasks) >= 3
    lp = limit_plan(p, 15, cfg.config_hash())
    assert [len(t.windows) for t in lp.tasks] == [10, 5]
    assert lp.tasks[0] == p.tasks[0]  # whole: same key, reused by a later full build
    assert lp.tasks[1].windows == p.tasks[1].windows[:5] and lp.tasks[1].key != p.tasks[1].key
    assert lp.windows_per_scene == {p.scenes[0].scene_id: 15}
    assert limit_plan(p, 10_000, cfg.config_hash()).tasks == p.tasks
    with pytest.raises(BuildError, match="--limit 0"):
        limit_plan(p, 0, cfg.config_hash())


def test_a_limited_build_refuses_to_delete_a_fuller_one(tmp_path: Path) -> None:
    (tmp_path / "_tasks").mkdir()
    for i in range(3):
        (tmp_path / "_tasks" / f"task-{i:05d}.json").write_text("{}")
    refuse_loss(tmp_path, [{"task_id": 0}, {"task_id": 1}, {"task_id": 2}], 5)  # all reused: fine
    with pytest.raises(BuildError, match=r"1 finished task\(s\) that --limit 5 would delete"):
        refuse_loss(tmp_path, [{"task_id": 0}, {"task_id": 1}], 5)
