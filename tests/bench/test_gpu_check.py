"""bench/gpu_check.sh's Python parts on the CPU with tiny sizes: the step benchmark writes every figure
(per batch and checkpointing mode: padding share, tokens/s, step time; the TLM overhead rows), and (slow)
the whole script runs end to end with DEVICE=cpu."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_step import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--tiny", "--device", "cpu", "--seq-len", "64", "--image", "56", "--repeats", "1", "--warmup", "0"]


def test_step_benchmark_writes_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    configs = ["--batches", "1", "3", "--grad-ckpt", "off", "on", "--tlm-batches", "2"]
    main([*TINY, *configs, "--profile-batch", "2", "--compile", "off", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [(r["batch"], r["grad_ckpt"]) for r in saved["steps"]] == [
        (1, False),
        (3, False),
        (1, True),
        (3, True),
    ]
    for r in saved["steps"]:
        assert r["tokens_real"] <= r["tokens_padded"]
        assert r["padding_share"] == pytest.approx(1 - r["tokens_real"] / r["tokens_padded"])
        assert r["padding_share"] <= r["padding_share_ungrouped"] + 1e-9  # grouping never pads more here
        assert r["tokens_per_s"] > 0 and r["mfu"] is None  # no GPU peak on a CPU
    (t,) = saved["tlm_overhead"]
    assert t["batch"] == 2
    assert {"overhead_pct_stage1", "overhead_pct_stage2", "overhead_pct_paired_stage1"} <= set(t)
    assert 0 < t["tlm_flop_share_pct_stage2"] < t["tlm_flop_share_pct_stage1"] < 100  # training needs more
    for r in saved["steps"]:  # the step's matmul FLOPs by part add up; every part is counted
        parts = r["model_tflop_per_step"]
        assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
        assert all(v > 0 for v in parts.values())
    prof = saved["profile"]
    assert prof["batch"] == 2 and prof["wall_s"] > 0 and prof["tlm_cpu_s"] > 0  # the TLM ran in its range
    var = saved["variants"]
    assert set(var["step_s"]) == {  # compile off
        "default",
        "whole_logits",
        "no_lora_dropout",
        "lora_cast_float32",
        "vision_under_autograd",
        "per_window_attention",
        "device_index",
    }
    assert saved["profile_device_index"]["wall_s"] > 0  # the step before model/host_index.py, profiled too
    assert var["speedup_vs_default"]["default"] == 1.0


@pytest.mark.slow
def test_the_whole_script_runs_on_cpu(tmp_path: Path) -> None:
    env = os.environ | {
        "DEVICE": "cpu",
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "PYTHON": sys.executable,
        "STEP_ARGS": " ".join(
            [TINY[0], *TINY[3:], "--batches", "1", "--tlm-batches", "1", "--compile", "off"]
        ),
    }
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "gpu_step.json").read_text())["steps"]
    tiny = json.loads((tmp_path / "out" / "gpu_tiny_train.json").read_text())
    assert tiny["stage1"]["steps"] > 0 and tiny["stage2"]["steps"] > 0
