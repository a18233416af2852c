"""The build's LocalCluster workers start without Dask's MALLOC_TRIM_THRESHOLD_ (pipelines/executor.py
WORKER_ENV_UNSET: with it, every chip-sized array is a fresh mmap), keep Dask's other worker settings, and
still get a MALLOC_TRIM_THRESHOLD_ the user set in the build's environment."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from pipelines.executor import _client


def _worker_env(names: tuple[str, ...]) -> dict[str, str | None]:
    cfg = SimpleNamespace(scheduler=None, workers=1)
    client = _client(cfg, None, 1, 1)  # type: ignore[arg-type]
    try:
        per_worker = client.run(lambda: {n: os.environ.get(n) for n in names})
    finally:
        client.close()
        client.cluster.close()
    (env,) = per_worker.values()
    return env


@pytest.mark.slow  # a LocalCluster (about 2 s)
def test_workers_start_without_dask_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    env = _worker_env(("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"))
    assert env["MALLOC_TRIM_THRESHOLD_"] is None  # Dask's default would be "65536"
    assert env["OMP_NUM_THREADS"] == "1"  # the rest of Dask's pre-spawn environment is kept
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nor does the cluster's start set it here


@pytest.mark.slow  # a LocalCluster (about 2 s)
def test_a_malloc_trim_the_user_set_reaches_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert _worker_env(("MALLOC_TRIM_THRESHOLD_",)) == {"MALLOC_TRIM_THRESHOLD_": "131072"}
