"""The training loop: config errors, which parameters each stage trains, overfitting, exact resume, stage 2
continuing stage 1, and (slow) the `make train` command on the demo shards."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from model.assemble import build_model, set_trainable
from model.checkpoint import CheckpointError, read_json
from model.collate import Collator
from model.config import TrainConfig, load_config, parse_config
from model.data import ShardDataset
from model.lora import lora_state_dict, parameter_groups
from model.train import Runtime, lr_factor, make_optimizer, run, train_stage
from tests.model.data_fixtures import make_row, write_dataset, write_shard

ROOT = Path(__file__).resolve().parents[2]
CPU = Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight small chips: six train, two validation (short captions, every QA task)."""
    return write_dataset(
        tmp_path_factory.mktemp("shards"), ["train"] * 6 + ["validation"] * 2, rows_per_file=8
    )


def config(tmp: Path, data: Path, **stages: dict[str, Any]) -> TrainConfig:
    stage1 = {"data": "caption", "train": ["lora", "tlm"], "max_steps": 3, "lr": 1e-3, "batch_size": 2}
    stage2 = {
        "data": "qa",
        "tasks": ["counting", "localization"],
        "train": ["lora"],
        "max_steps": 2,
        "lr": 1e-4,
    }
    raw = {
        "base": "tiny",
        "image_size": 56,
        "max_length": 256,
        "data": str(data),
        "output_dir": str(tmp / "run"),
        "stage1": stage1 | stages.get("stage1", {}),
        "stage2": stage2 | stages.get("stage2", {}),
    }
    return parse_config(raw)


# == config ===========================================================================================
def test_config_errors_are_one_line_naming_the_fields(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "base: tiny\nimage_size: 100\nstage1: {data: caption, train: [lora], lr: -1, epochs: 1}\nbogus: 1\n"
    )
    with pytest.raises(ValueError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(p))
    assert "stage1.lr" in msg and "bogus" in msg and "image_size" in msg


def test_config_rejects_training_a_disabled_tlm() -> None:
    with pytest.raises(ValueError, match=r"stage1\.train lists 'tlm' but tlm\.enabled is false"):
        parse_config(
            {"tlm": {"enabled": False}, "stage1": {"data": "caption", "train": ["lora", "tlm"], "lr": 1e-4}}
        )


def test_shipped_configs_validate() -> None:
    for name in ("tiny", "qwen2_5_vl_7b", "qwen3_vl_8b"):
        cfg = load_config(ROOT / "model" / "configs" / f"{name}.yaml")
        assert cfg.stage("stage1").train == ("lora", "tlm") and cfg.stage("stage2").train == ("lora",)


def test_warmup_then_cosine_schedule() -> None:
    total = 100
    f = [lr_factor(s, total, 0.05, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.2) and f[4] == pytest.approx(1.0)  # 5 warm-up steps
    assert all(a >= b for a, b in itertools.pairwise(f[4:]))  # then non-increasing
    assert f[52] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert lr_factor(total, total, 0.05, 0.1) == pytest.approx(0.1)


# == which parameters train ==========================================================================
def one_step_changes(cfg: TrainConfig, stage: str, data: Path) -> tuple[set[str], dict[str, list[str]]]:
    """Names of the parameters that one optimizer step of `stage` changed."""
    st = cfg.stage(stage)
    model, processor = build_model(cfg)
    with (
        torch.no_grad()
    ):  # LoRA B starts at zero, which leaves A's gradient zero: make every LoRA matrix learn
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.02)
    set_trainable(model, st.train)
    opt, _ = make_optimizer(model, st, total=10)
    ds = ShardDataset(
        str(data), split="train", stage=st.data, tasks=st.tasks, image_size=56, shuffle_buffer=0
    )
    batch = Collator(processor, max_length=256)([s for _, s in zip(range(2), ds, strict=False)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model(**batch).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return changed, parameter_groups(model)


def test_stage1_updates_exactly_lora_and_tlm(tmp_path: Path, shards: Path) -> None:
    changed, groups = one_step_changes(config(tmp_path, shards), "stage1", shards)
    assert groups["lora"] and groups["tlm"]
    assert changed == set(groups["lora"]) | set(groups["tlm"])


def test_stage2_updates_exactly_lora(tmp_path: Path, shards: Path) -> None:
    changed, groups = one_step_changes(config(tmp_path, shards), "stage2", shards)
    assert changed == set(groups["lora"])


# == learning ========================================================================================
def test_tiny_model_overfits_a_handful_of_rows(tmp_path: Path) -> None:
    """Four chips with four different short captions: the loss of the same loop falls below half its start.

    The tiny base's output head is built with the confident logit range of a pretrained base
    (model.base.build_tiny_base); LoRA + TLM then have to learn which image gets which caption."""
    words = ["rice paddies", "a busy port", "sand dunes", "a frozen lake"]
    rows = []
    for i, w in enumerate(words):
        row = make_row(f"chip{i}", "train", seed=i)
        row["caption"], row["messages"][1]["content"] = w, w
        rows.append(row)
    write_shard(tmp_path / "data" / "train.parquet", rows, 4)
    cfg = config(
        tmp_path,
        tmp_path,
        stage1={"max_steps": 25, "lr": 5e-3, "batch_size": 4, "warmup_ratio": 0.0, "eval_split": None},
    )
    cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"dropout": 0.0})})
    model, processor = build_model(cfg)
    result = train_stage(cfg, "stage1", model, processor, CPU, data=str(tmp_path))
    assert result.steps == 25 and len(result.losses) == 25 and result.losses[-1] == result.last_loss
    assert result.last_loss < 0.5 * result.first_loss, (result.first_loss, result.last_loss)
    lines = [json.loads(x) for x in (tmp_path / "run" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 26))
    assert {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(lines[0])
    assert (tmp_path / "run" / "stage1" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_gives_the_identical_next_step_loss(tmp_path: Path, shards: Path) -> None:
    """Run 4 steps saving every step; resume a fresh process-equivalent from step 2: steps 3 and 4 match."""
    over = {
        "max_steps": 4,
        "save_every": 1,
        "shuffle_buffer": 8,
        "grad_accum": 2,
        "batch_size": 1,
        "eval_split": None,
    }
    a = config(tmp_path / "a", shards, stage1=over)
    model, processor = build_model(a)
    train_stage(a, "stage1", model, processor, CPU, data=str(shards))
    full = [
        json.loads(x) for x in (tmp_path / "a" / "run" / "stage1" / "metrics.jsonl").read_text().splitlines()
    ]

    b = config(tmp_path / "b", shards, stage1=over)
    torch.manual_seed(1234)  # a different process state: the checkpoint must restore everything that matters
    model_b, processor_b = build_model(b)
    run(b, stages=("stage1",), resume=str(tmp_path / "a" / "run" / "stage1" / "checkpoint-000002"))
    resumed = [
        json.loads(x) for x in (tmp_path / "b" / "run" / "stage1" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in resumed] == [3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[2:]]
    assert [r["grad_norm"] for r in resumed] == [r["grad_norm"] for r in full[2:]]
    del model_b, processor_b


def test_resume_with_another_stage_config_is_refused(tmp_path: Path, shards: Path) -> None:
    a = config(tmp_path, shards, stage1={"max_steps": 2, "save_every": 1, "eval_split": None})
    run(a, stages=("stage1",))
    b = config(tmp_path, shards, stage1={"max_steps": 2, "save_every": 1, "eval_split": None, "lr": 5e-4})
    with pytest.raises(CheckpointError, match=r"config differs in \['lr'\]"):
        run(b, stages=("stage1",), resume=str(tmp_path / "run" / "stage1" / "checkpoint-000001"))


def test_stage2_continues_stage1_adapter_with_the_tlm_frozen(tmp_path: Path, shards: Path) -> None:
    cfg = config(tmp_path, shards, stage1={"eval_split": None}, stage2={"eval_split": None})
    run(cfg, stages=("stage1",))
    s1 = tmp_path / "run" / "stage1" / "final"
    run(cfg, stages=("stage2",))  # a separate invocation: stage 2 loads stage 1's checkpoint from disk
    s2 = tmp_path / "run" / "stage2" / "final"

    inherits = read_json(s2, "inherits.json")
    assert inherits["checkpoint"] == str(s1.resolve()) and inherits["step"] == 3
    assert inherits["data_fingerprint"]["digest"] == read_json(s1, "data_fingerprint.json")["digest"]
    assert inherits["config"]["stage1"]["train"] == ["lora", "tlm"]
    assert inherits["overrides"]["train"] == [["lora", "tlm"], ["lora"]]
    # the TLM is frozen in stage 2: byte-identical; the adapter trained on from stage 1's
    t1, t2 = load_file(str(s1 / "tlm.safetensors")), load_file(str(s2 / "tlm.safetensors"))
    assert t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)
    a1, a2 = (
        load_file(str(s1 / "adapter_model.safetensors")),
        load_file(str(s2 / "adapter_model.safetensors")),
    )
    assert a1.keys() == a2.keys() and any(not torch.equal(a1[k], a2[k]) for k in a1)

    # and it started from stage 1's adapter (not from a fresh one)
    from model.train import inherit

    fresh, _ = build_model(cfg)
    inherit(cfg, cfg.stage("stage2"), fresh, loaded=False)
    assert all(torch.equal(v, a1[k]) for k, v in lora_state_dict(fresh).items())


def test_stage2_without_a_stage1_checkpoint_says_what_to_do(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(CheckpointError, match="run --stage 1 first"):
        run(config(tmp_path, shards), stages=("stage2",))


def test_the_qwen3_vl_family_trains_and_its_checkpoint_generates(tmp_path: Path, shards: Path) -> None:
    from PIL import Image

    from model.predict import generate, load_for_inference, make_sample

    cfg = config(tmp_path, shards, stage1={"max_steps": 2, "eval_split": None})
    cfg = cfg.model_copy(update={"base": "tiny:qwen3_vl"})
    model, processor = build_model(cfg)
    result = train_stage(cfg, "stage1", model, processor, CPU, data=str(shards))
    assert result.steps == 2 and math.isfinite(result.last_loss)
    loaded, proc, loaded_cfg = load_for_inference(result.final, device=torch.device("cpu"))
    assert loaded_cfg.base == "tiny:qwen3_vl" and type(loaded.base.base_model.model).__name__.startswith(
        "Qwen3VL"
    )
    sample = make_sample(Image.new("RGB", (64, 64)), "How many ships?", image_size=56)
    assert len(generate(loaded, proc, [sample], max_new_tokens=3)) == 1


def test_gradient_checkpointing_changes_memory_not_the_maths(tmp_path: Path, shards: Path) -> None:
    losses = []
    for gc in (False, True):
        cfg = config(tmp_path / str(gc), shards, stage1={"max_steps": 2, "eval_split": None})
        cfg = cfg.model_copy(update={"gradient_checkpointing": gc})
        model, processor = build_model(cfg)
        assert model.base.is_gradient_checkpointing is gc
        result = train_stage(cfg, "stage1", model, processor, CPU, data=str(shards))
        losses.append((result.first_loss, result.last_loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


# == the command =====================================================================================
@pytest.mark.slow
def test_make_train_on_the_demo_shards(tmp_path: Path) -> None:
    """`make train` equivalent: the tiny config on the demo shards, both stages, on CPU in a few minutes."""
    py = sys.executable
    demo = tmp_path / "demo"
    subprocess.run(
        [py, "-m", "pipelines", "build", "pipelines/regions/demo.yaml", "--set", f"output.dir={demo}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "train"
    proc = subprocess.run(
        [
            py,
            "-m",
            "model.train",
            "--config",
            "model/configs/tiny.yaml",
            "--data",
            str(demo),
            "--output-dir",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("stage1", "stage2"):
        final = out / stage / "final"
        for name in (
            "adapter_model.safetensors",
            "adapter_config.json",
            "tlm.safetensors",
            "tlm_config.json",
            "trainer_state.json",
            "config.json",
            "data_fingerprint.json",
        ):
            assert (final / name).is_file(), (stage, name)
        metrics = [json.loads(x) for x in (out / stage / "metrics.jsonl").read_text().splitlines()]
        losses = [m["loss"] for m in metrics if "loss" in m]
        assert losses and all(math.isfinite(x) for x in losses)
        assert (out / stage / "loss.png").stat().st_size > 1000
    assert (out / "stage2" / "final" / "inherits.json").is_file()


@pytest.mark.slow
def test_ddp_on_cpu_with_torchrun(tmp_path: Path, shards: Path) -> None:
    """Two gloo ranks: both stages run, rank 0 writes the checkpoints, the ranks stop together."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(
        "base: tiny\nimage_size: 56\nmax_length: 256\n"
        "stage1: {data: caption, train: [lora, tlm], max_steps: 3, lr: 1.0e-3, save_every: 2, eval_every: 2}\n"
        "stage2: {data: qa, tasks: [counting], train: [lora], epochs: 1, lr: 1.0e-4}\n"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "-m",
            "model.train",
            "--config",
            str(cfg),
            "--data",
            str(shards),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s1 = [json.loads(x) for x in (tmp_path / "out" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in s1 if "loss" in r] == [1, 2, 3]
    assert (tmp_path / "out" / "stage1" / "checkpoint-000002" / "adapter_model.safetensors").is_file()
    # 6 counting questions, planned as 3 per rank; but ranks get whole row groups (4 rows + 2 train rows), so
    # rank 1 runs out after 2 samples and BOTH ranks end the stage there instead of hanging
    s2 = [json.loads(x) for x in (tmp_path / "out" / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in s2 if "loss" in r] == [1, 2]
    assert "data exhausted at step 2 of 3" in proc.stderr
    assert (tmp_path / "out" / "stage2" / "final" / "inherits.json").is_file()


def test_the_stage_summary_averages_each_end_and_names_eval_losses(tmp_path: Path) -> None:
    """The summary `make train` prints: noisy batch losses are averaged over a tenth of the run at each end."""
    from model.train import StageResult

    r = StageResult(
        final=tmp_path,
        steps=20,
        first_loss=9.0,
        last_loss=9.0,
        losses=[9.0, 5.0] + [3.0] * 16 + [1.0, 9.0],
        eval_losses=[3.25, 2.0, 0.875],
    )
    assert r.window == 2
    assert (
        r.summary() == "loss 7.0000 -> 5.0000 (mean of the first / last 2 steps), eval loss 3.2500 -> 0.8750"
    )
    assert StageResult(final=tmp_path, steps=0, first_loss=0.0, last_loss=0.0).summary() == "no step"
