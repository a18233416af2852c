"""The cost model's arithmetic on a small case worked by hand, and its recorded inputs name their source."""

from __future__ import annotations

import json

import pytest

from bench.cost_model import INPUTS, estimate, main

SMALL = {
    "build": {
        "worker_seconds_per_window": 0.5,
        "kept_fraction": 0.5,
        "shard_bytes_per_chip": 1000,
        "chip_px": 64,
    },
    "earthengine": {
        "scene_requests_per_chip": 1.0,
        "scene_bytes_per_chip": 100,
        "anchor_requests_per_chip": 0.25,
        "anchor_bytes_per_chip": 40,
        "chip_px": 128,
    },
    "cog": {"bytes_per_chip_dense": 1000, "chip_px": 256},
    "llm": {"requests_per_chip": 2.0, "prompt_tokens_per_chip": 1000, "completion_tokens_per_chip": 100},
    "train": {
        "train_fraction": 0.5,
        "tokens_per_caption_chat": 1000,
        "qa_chats_per_chip": 2.0,
        "tokens_per_qa_chat": 500,
        "stage1_epochs": 2,
        "stage2_epochs": 1,
        "tokens_per_s_per_gpu": 1000,
    },
}


def test_small_case_by_hand() -> None:
    e = estimate(SMALL, chips=3600, workers=4, gpus=2, price_in=1.0, price_out=10.0, chip_px=128)
    # 3,600 kept of half the windows: 7,200 windows; 128 px is 4x the 64 px the build was measured at
    assert e["windows"] == 7200
    assert e["build_worker_hours"] == pytest.approx(7200 * 0.5 * 4 / 3600)  # 4.0
    assert e["build_wall_hours"] == pytest.approx(1.0)
    assert e["shard_bytes"] == pytest.approx(3600 * 1000 * 4)
    assert e["earthengine_requests"] == pytest.approx(7200)  # scenes only: embeddings from the COGs
    assert e["earthengine_bytes"] == pytest.approx(7200 * 100)  # measured at 128 px: no scaling
    assert e["cog_bytes"] == pytest.approx(7200 * 1000 / 4)  # measured at 256 px: a quarter
    assert e["llm_cost"] == pytest.approx(3600 * 1000 / 1e6 * 1 + 3600 * 100 / 1e6 * 10)  # 3.6 + 3.6
    # 1,800 training chips: stage 1 = 1,800 x 1,000 x 2 tokens = 1 GPU-hour at 1,000 tokens/s
    assert e["stage1_gpu_hours"] == pytest.approx(1.0)
    assert e["stage2_gpu_hours"] == pytest.approx(1800 * 2 * 500 / 1000 / 3600)  # 0.5
    assert e["train_wall_hours"] == pytest.approx(1.5 / 2)


def test_embeddings_from_earthengine_and_the_offline_writer() -> None:
    e = estimate(SMALL, chips=100, workers=1, gpus=1, price_in=1, price_out=1, embeddings="earthengine",
                 scene_source="local", writer="offline", chip_px=64)  # fmt: skip
    assert e["earthengine_requests"] == pytest.approx(200 * 0.25) and e["cog_bytes"] == 0
    assert e["llm_cost"] == 0 and e["llm_requests"] == 0


def test_recorded_inputs_say_where_they_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    inputs = json.loads(INPUTS.read_text())
    assert all(block.get("source") for block in inputs.values())
    assert main(["--chips", "1000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chips"] == 1000
