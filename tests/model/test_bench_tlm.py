"""Smoke tests of bench/train_tlm_overhead.py: the tiny run writes its JSON, the 7B config has the real sizes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.train_tlm_overhead import main


def test_tiny_benchmark_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "tlm_overhead.json"
    result = main(["--repeats", "2", "--warmup", "0", "--image", "112", "--seq-len", "64", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["mode"] == "tiny" and saved["visual_tokens_per_image"] == 16
    for mode in ("tlm", "tlm_frozen", "no_tlm"):
        assert saved[mode]["median_s"] > 0
    assert saved["ratio_of_medians"] == result["ratio_of_medians"] > 0


def test_real_size_dry_run_has_qwen2_5_vl_7b_sizes(tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    result = main(["--real", "--dry-run", "--out", str(out)])
    params = result["params"]
    # LoRA r 8 on q, k, v, o (3584 -> 3584 / 512 with 4 KV heads) and gate, up, down (3584 <-> 18944), 28 layers
    per_layer = 8 * (2 * (3584 + 3584) + 2 * (3584 + 512) + 3 * (3584 + 18944))
    assert params["lora"] == 28 * per_layer
    assert params["tlm"] == 64 * 14336 + 14336 + 14336 * 7168 + 7168
    assert 8.2e9 < params["base"] < 8.4e9  # Qwen2.5-VL-7B-Instruct has 8.29 B parameters
    assert 0 < result["flops_stage1"]["tlm_share_pct"] < 1
