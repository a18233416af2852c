"""The card's re-check on the workers (pipelines/executor.py `_recheck`, `_rechecked`): submitted as
each task finishes, its per-shard counts are those of `checker_counts` run here, and a lost re-check
leaves the driver to check the shards itself, never a report with a shard missing."""

from __future__ import annotations

from pathlib import Path

from pipelines.executor import _recheck, _rechecked
from pipelines.plan import plan
from pipelines.stages import run_task
from tests.conftest import ROOT
from triplet_builder.config import load_region
from triplet_builder.text.quality import checker_counts, text_quality

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def test_rechecks_submitted_per_task_give_the_counts_of_the_serial_check(tmp_path: Path) -> None:
    from dask.distributed import Client, LocalCluster

    out = tmp_path / "out"
    cfg = load_region(DEMO, {"output.dir": str(out), "cache_dir": str(out / "cache"), "chips_per_task": 32})
    results = [run_task(t, cfg) for t in plan(cfg).tasks]
    data = sorted(f for r in results for f in r["written"]["files"] if f.startswith("data/"))
    assert len(results) >= 2 and len(data) >= 2
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        futures: dict[str, object] = {}
        for res in results:  # as the build's loop does, one finished task at a time
            futures.update(_recheck(client, out, res))
        assert sorted(futures) == data
        checked = _rechecked(client, futures)
        assert checked == {f: checker_counts(out / f) for f in data}
        assert all(c is not None and c["rows_checked"] > 0 for c in checked.values())
        assert text_quality(out, data, checked) == text_quality(out, data)

        first = sorted(f for f in results[0]["written"]["files"] if f.startswith("data/"))
        (out / first[0]).unlink()  # a shard gone before its re-check: the worker's task raises
        lost = _rechecked(client, _recheck(client, out, results[0]) | _recheck(client, out, results[1]))
        assert lost == {}  # nothing half-counted: text_quality then checks every shard in the driver
