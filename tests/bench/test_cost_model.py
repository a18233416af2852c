"""The cost model's arithmetic on a small case worked by hand, and its recorded inputs name their source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cost_model import INPUTS, _image_bytes, estimate, main, measure_build
from pipelines.estimate import shard_bytes_per_chip
from schemas.codec import Stretch, encode_chip
from tests.triplet_builder.writers.records import make_records
from triplet_builder.writers.parquet import ShardWriter

SMALL = {
    "build": {
        "worker_seconds_per_window": 0.5,
        "kept_fraction": 0.5,
        "shard_fixed_bytes_per_chip": 600,
        "image_bytes_per_px": 0.25,  # 1,000 bytes a 64 px chip, 4,720 a 128 px one
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
    assert e["shard_bytes"] == pytest.approx(3600 * (600 + 0.25 * 128 * 128))  # the fixed part does not grow
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


def test_shard_bytes_are_a_fixed_part_plus_the_png() -> None:
    b = {"shard_fixed_bytes_per_chip": 20_000, "image_bytes_per_px": 0.5, "chip_px": 256}
    assert shard_bytes_per_chip(b, 256) == 20_000 + 0.5 * 65_536
    assert shard_bytes_per_chip(b, 128) == 20_000 + 0.5 * 16_384  # the anchors' codes do not shrink
    e = estimate({**SMALL, "build": {**SMALL["build"], **b}}, chips=10, workers=1, gpus=1, price_in=0,
                 price_out=0, chip_px=128)  # fmt: skip
    assert e["shard_bytes"] == pytest.approx(10 * (20_000 + 0.5 * 16_384))


@pytest.mark.slow  # two small builds and a synthetic AlphaEarth tile
def test_measure_build_on_a_small_generated_scene(tmp_path: Path) -> None:
    inputs = json.loads(INPUTS.read_text())
    new = measure_build(inputs, size=768, out=tmp_path)
    b = new["build"]
    assert b["chip_px"] == 256 and b["worker_seconds_per_window"] > 0
    assert 0 < b["kept_fraction"] <= 1
    # a kept chip's codes alone are 16 x 16 anchors x 64 int8; the PNG of a real 8-bit chip under 4 bytes a px
    assert 16 * 16 * 64 * 0.8 < b["shard_fixed_bytes_per_chip"] < 100_000
    assert 0.2 < b["image_bytes_per_px"] < 4
    assert "generated 768 px scene" in b["source"]
    assert {k: v for k, v in new.items() if k not in ("build", "train")} == {
        k: v for k, v in inputs.items() if k not in ("build", "train")
    }


def test_image_bytes_are_the_pngs_the_codec_writes(tmp_path: Path) -> None:
    records = make_records(12)
    expected = sum(
        len(encode_chip(r.db, r.valid, r.scene.polarisations, Stretch()).png)
        for r in records
        if not r.rejected
    )
    with ShardWriter(tmp_path, 0, config_hash="0123456789abcdef", pipeline_version="test") as w:
        for rec in records:
            w.write(rec)
        files = [tmp_path / f for f in w.close()["files"] if f.startswith("data/")]
    assert expected > 0 and _image_bytes(files) == expected
