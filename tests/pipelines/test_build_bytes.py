"""The build's speed-ups change no output byte: the demo region built task by task with the AlphaEarth
block cache off, then with it on and warm across tasks run in the reverse order (what a worker sees),
gives the same shard and rejects files, byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import triplet_builder.embeddings.cog as cog
from pipelines.plan import plan
from pipelines.stages import run_task
from tests.conftest import ROOT
from triplet_builder.config import load_region
from triplet_builder.embeddings.block_cache import clear_block_caches

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def _build(out: Path, *, reverse: bool) -> dict[str, str]:
    cfg = load_region(DEMO, {"output.dir": str(out), "cache_dir": str(out / "cache"), "chips_per_task": 8})
    tasks = plan(cfg).tasks
    assert len(tasks) >= 4  # several tasks per scene: the cache crosses task borders
    for t in reversed(tasks) if reverse else tasks:
        run_task(t, cfg)
    files = sorted([*out.glob("data/**/*.parquet"), *out.glob("rejects/*.parquet")])
    assert any("data" in f.parts for f in files) and any("rejects" in f.parts for f in files)
    return {f.relative_to(out).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_block_cache_on_and_warm_gives_the_bytes_of_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_block_caches()
    with monkeypatch.context() as m:
        m.setattr(cog, "block_cache", lambda max_bytes: None)  # every block decompressed at every call
        off = _build(tmp_path / "off", reverse=False)
    clear_block_caches()
    on = _build(tmp_path / "on", reverse=True)
    assert on == off
