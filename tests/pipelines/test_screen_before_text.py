"""Cheap pixel checks run before the facts and the text: a featureless chip and a duplicate chip cost no
LLM request (counted in the loopback OpenAI-compatible server's log); the text consistency check stays
after the text."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from pipelines.executor import plan
from pipelines.stages import build_stages
from tests.conftest import ROOT
from tests.servers.openai_compat import openai_server
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.record import ChipRecord, chip_id_for
from triplet_builder.stages.base import Stage, Stats, run_stages

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
KEY_ENV = "SAR_TRIPLETS_TEST_LLM_KEY"


def _cfg(tmp: Path, url: str) -> RegionConfig:
    llm = {"model": "loopback/test-model", "base_url": f"{url}/v1", "api_key_env": KEY_ENV, "timeout_s": 5.0}
    return load_region(
        DEMO,
        {
            "output.dir": str(tmp / "out"),
            "cache_dir": str(tmp / "cache"),
            "text": {"writer": "llm", "llm": llm},
        },
    )


def _split(stages: list[Stage]) -> tuple[list[Stage], list[Stage]]:
    """The stages up to the embedding, and those after it (without the writer)."""
    names = [s.name for s in stages]
    cut = names.index("embed") + 1
    return stages[:cut], [s for s in stages[cut:] if s.name != "write"]


def _embedded(cfg: RegionConfig) -> list[ChipRecord]:
    """Kept chips of the port tile, read, georeferenced and embedded."""
    t = plan(cfg).tasks[1]
    recs = [ChipRecord(chip_id_for(t.scene.scene_id, w), t.scene, w) for w in t.windows[8:20]]
    pre, rest = _split(build_stages(cfg))
    out = [r for r in run_stages(pre, recs, Stats()) if not r.rejected]
    for s in pre + rest:
        s.close()
    assert len(out) >= 4
    return out


def _requests(tmp: Path, records: list[ChipRecord]) -> tuple[int, list[ChipRecord], Stats]:
    """LLM requests the stages after the embedding make for these chips (fresh server and cache)."""
    with openai_server() as srv:
        cfg = _cfg(tmp, srv.url)
        _, post = _split(build_stages(cfg))
        stats = Stats()
        out = list(run_stages(post, copy.deepcopy(records), stats))
        for s in post:
            s.close()
        return len(srv.log), out, stats


def test_featureless_and_duplicate_chips_cost_no_llm_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-screen")
    base = _embedded(_cfg(tmp_path / "read", "http://127.0.0.1:9"))
    good = base[:2]
    flat = copy.copy(base[2])  # a chip of its own place, with flat pixels
    flat.db = np.full_like(base[2].db, -12.0)
    twin = copy.copy(base[3])  # another place's chip with the pixels of good[1]
    twin.db, twin.valid = good[1].db.copy(), good[1].valid.copy()  # type: ignore[union-attr]
    n_good, _, _ = _requests(tmp_path / "a", good)
    n_all, out, stats = _requests(tmp_path / "b", [*good, flat, twin])
    assert n_good > 0 and n_all == n_good  # not one request for the two rejected chips
    by_id = {r.chip_id: r for r in out}
    assert (by_id[flat.chip_id].reject_stage, by_id[flat.chip_id].reject_reason) == ("screen", "featureless")
    assert (by_id[twin.chip_id].reject_stage, by_id[twin.chip_id].reject_reason) == ("screen", "duplicate")
    assert by_id[flat.chip_id].facts is None and by_id[twin.chip_id].caption is None  # never reached facts
    assert stats["text"].seen == 2 and stats["filter"].seen == 2  # consistency: after the text
