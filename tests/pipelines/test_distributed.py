"""The build on a REAL dask.distributed cluster: a `dask scheduler` and two `dask worker` processes
(`--nworkers 1 --nthreads 1`) started here as separate processes on 127.0.0.1, reached through the
scheduler address (the CLI's --scheduler). Its shards are byte-identical to a LocalCluster build of the
same region, and the build still completes, with the same shards, when a worker process is killed after
the first task has finished (observed through the task marker files, not a sleep)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from triplet_builder.config import load_region

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
pytestmark = pytest.mark.slow  # three builds and a cluster (about 60 s)


def _wait_for(predicate: Any, what: str, deadline_s: float = 120.0) -> None:
    """Poll `predicate` until it holds; the deadline only guards against a hang, it is never the test."""
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.file = tmp / "scheduler.json"
        log = (tmp / "dask.log").open("w")
        self.scheduler = subprocess.Popen(
            [
                *DASK,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.file),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_for(lambda: self.file.is_file() and self.file.stat().st_size > 0, "the scheduler file")
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [
            subprocess.Popen(
                [
                    *WORKER,
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-nanny",  # the worker IS this process: killing it kills the worker
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        from dask.distributed import Client

        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _region(tmp: Path, name: str) -> Any:
    return load_region(
        DEMO,
        {"output.dir": str(tmp / name), "cache_dir": str(tmp / "cache"), "chips_per_task": 8, "workers": 1},
    )


def _shards(m: dict[str, Any], out: Path) -> dict[str, str]:
    """The build's files by name and hash (`out`: its folder; the manifest names none, being portable)."""
    return {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in [*m["files"], *m["rejects_files"]]}


def test_real_cluster_gives_the_local_clusters_shards_even_when_a_worker_dies(
    tmp_path: Path, cluster: Cluster
) -> None:
    from pipelines.executor import build

    local = build(_region(tmp_path, "local"), progress=False)
    assert local["counts"]["tasks"] > 4 and local["counts"]["chips_kept"] > 0
    reference = _shards(local, tmp_path / "local")

    remote = build(_region(tmp_path, "remote"), scheduler=cluster.address, progress=False)
    assert remote["counts"]["tasks_failed"] == 0
    assert _shards(remote, tmp_path / "remote") == reference  # byte for byte, file for file
    assert remote["counts"] == local["counts"]

    # a worker process killed (SIGKILL) once the first task has finished: the others are rescheduled
    cfg = _region(tmp_path, "killed")
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(m=build(cfg, scheduler=cluster.address, progress=False)), daemon=True
    )
    thread.start()
    tasks = Path(cfg.output.dir) / "_tasks"
    _wait_for(lambda: tasks.is_dir() and any(tasks.glob("task-*.json")), "the first finished task")
    finished_at_kill = len(list(tasks.glob("task-*.json")))
    victim = cluster.workers[0]
    victim.kill()
    victim.wait(timeout=30)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the build did not finish after a worker was killed"
    killed = result["m"]
    assert finished_at_kill < killed["counts"]["tasks"]  # the kill came mid-run
    assert killed["counts"]["tasks_failed"] == 0, killed["failures"]
    assert _shards(killed, tmp_path / "killed") == reference
    assert killed["counts"]["chips_kept"] + killed["counts"]["chips_rejected"] == killed["counts"]["windows"]
