"""Checkpoints: round trip of weights and trainer state, strict loading with one-line errors, atomic writes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model.assemble import build_model, set_trainable
from model.checkpoint import (
    CheckpointError,
    atomic_dir,
    find_latest,
    load_tlm_config,
    load_trainer_state,
    load_weights,
    rank_state,
    read_meta,
    save_checkpoint,
)
from model.config import TrainConfig, parse_config
from model.lora import lora_state_dict
from model.train import make_optimizer

STAGE = {"data": "caption", "train": ["lora", "tlm"], "max_steps": 5, "lr": 1e-3}


def cfg(**over: object) -> TrainConfig:
    return parse_config({"base": "tiny", "image_size": 56, "seed": 0, "stage1": STAGE, **over})


def perturbed_model(c: TrainConfig, seed: int = 7) -> torch.nn.Module:
    """A model whose LoRA and TLM weights are all non-default (so a round trip proves something)."""
    model, _ = build_model(c)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or name.startswith("tlm."):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def save(model: torch.nn.Module, path: Path, c: TrainConfig, **kw: object) -> Path:
    return save_checkpoint(path, model, stage="stage1", step=3, config=c.model_dump(mode="json"), **kw)  # type: ignore[arg-type]


def test_weights_round_trip_in_the_peft_and_release_layout(tmp_path: Path) -> None:
    c = cfg()
    src = perturbed_model(c)
    out = save(src, tmp_path / "ck", c, fingerprint={"digest": "abc"})
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tlm.safetensors",
        "tlm_config.json",
        "trainer_state.json",
        "trainer_state.safetensors",
        "config.json",
        "data_fingerprint.json",
    } <= names
    tlm_json = json.loads((out / "tlm_config.json").read_text())
    assert list(tlm_json)[:4] == ["sigma", "hidden_mult", "image_size", "vec_dim"]  # the release keys first
    assert tlm_json["image_size"] == 56
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8

    dst, _ = build_model(c)
    load_weights(out, dst)
    for k, v in lora_state_dict(src).items():
        assert torch.equal(v, lora_state_dict(dst)[k])
    assert all(
        torch.equal(a, b)
        for a, b in zip(src.tlm.state_dict().values(), dst.tlm.state_dict().values(), strict=True)
    )
    meta = read_meta(out)
    assert meta["stage"] == "stage1" and meta["step"] == 3 and meta["data_fingerprint"] == {"digest": "abc"}
    tc = load_tlm_config(out)  # the TLM settings travel with the checkpoint
    assert tc is not None
    assert (tc.sigma, tc.hidden_mult, tc.identity_init, tc.patch_centres) == (
        c.tlm.sigma,
        c.tlm.hidden_mult,
        c.tlm.identity_init,
        c.tlm.patch_centres,
    )


def test_the_adapter_loads_in_stock_peft(tmp_path: Path) -> None:
    """adapter_model.safetensors + adapter_config.json are what peft itself reads."""
    from peft import PeftModel

    from model.base import build_tiny_base

    c = cfg()
    src = perturbed_model(c)
    out = save(src, tmp_path / "ck", c)
    base, _ = build_tiny_base(seed=0)
    peft_model = PeftModel.from_pretrained(base, str(out))
    # peft names the adapter ("default") inside each key; otherwise the keys are ours
    theirs = {k.replace(".default.", "."): v for k, v in peft_model.state_dict().items() if ".lora_" in k}
    mine = lora_state_dict(src)
    assert (
        theirs.keys() == mine.keys() and any("lora_A" in k for k in mine) and any("lora_B" in k for k in mine)
    )
    for k, v in mine.items():
        assert torch.equal(theirs[k].cpu(), v.cpu()), k  # every tensor, element by element


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"lora": {"r": 4}}, r"adapter_model\.safetensors does not fit this model's LoRA"),
        (
            {"tlm": {"enabled": True, "hidden_mult": 2}},
            r"tlm\.safetensors does not fit this model: .*shape mismatch",
        ),
        (
            {"tlm": {"enabled": False}, "stage1": STAGE | {"train": ["lora"]}},
            r"holds a TLM but the model has none",
        ),
    ],
)
def test_strict_loading_rejects_a_wrong_checkpoint_in_one_line(
    tmp_path: Path, other: dict, match: str
) -> None:
    c = cfg()
    out = save(perturbed_model(c), tmp_path / "ck", c)
    model, _ = build_model(cfg(**other))
    with pytest.raises(CheckpointError, match=match) as e:
        load_weights(out, model)
    assert "\n" not in str(e.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    c = cfg()
    out = save(perturbed_model(c), tmp_path / "ck", c)
    (out / "tlm.safetensors").unlink()
    model, _ = build_model(c)
    with pytest.raises(CheckpointError, match="has no TLM weights"):
        load_weights(out, model)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tmp_path / "nope", model)


def test_trainer_state_restores_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    c = cfg()
    st = c.stage("stage1")
    model = perturbed_model(c)
    set_trainable(model, st.train)
    opt, sched = make_optimizer(model, st, total=10)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    out = save(
        model, tmp_path / "ck", c, optimizer=opt, scheduler=sched, data_state={"epoch": 0, "offset": 7}
    )
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    opt2, sched2 = make_optimizer(model, st, total=10)
    state = load_trainer_state(out, opt2, sched2)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect
    assert state["data"] == {"epoch": 0, "offset": 7} and state["step"] == 3
    assert sched2.state_dict()["last_epoch"] == 1 and sched2.get_last_lr() == sched.get_last_lr()
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, s in a["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b["state"][i][k])


def test_each_rank_resumes_its_own_data_position_and_rng(tmp_path: Path) -> None:
    """Under torchrun every rank hands in its state; on resume rank r gets rank r's (not rank 0's) data
    position and RNG draws, and a checkpoint of 2 ranks refuses to resume on 1."""
    c = cfg()
    model = perturbed_model(c)
    ranks, draws = [], []
    for r in range(2):
        torch.manual_seed(100 + r)
        random.seed(100 + r)
        ranks.append(rank_state({"epoch": 0, "offset": 10 + r, "rank": r}))
        draws.append((random.random(), float(torch.rand(1))))
    out = save(model, tmp_path / "ck", c, ranks=ranks)
    for r in (1, 0):
        torch.manual_seed(0)
        random.seed(0)
        state = load_trainer_state(out, rank=r, world_size=2)
        assert state["data"] == {"epoch": 0, "offset": 10 + r, "rank": r}
        assert (random.random(), float(torch.rand(1))) == draws[r]
    with pytest.raises(
        CheckpointError, match=r"written by 2 rank\(s\) and this run has 1; .*--nproc_per_node 2"
    ):
        load_trainer_state(out)


def test_an_optimizer_of_other_parameters_is_refused(tmp_path: Path) -> None:
    c = cfg()
    st = c.stage("stage1")
    model = perturbed_model(c)
    set_trainable(model, st.train)
    opt, sched = make_optimizer(model, st, total=10)
    out = save(model, tmp_path / "ck", c, optimizer=opt, scheduler=sched)
    set_trainable(model, ("lora",))
    opt2, _ = make_optimizer(model, st, total=10)
    with pytest.raises(CheckpointError, match="same trainable groups"):
        load_trainer_state(out, opt2)


def test_a_crash_while_writing_leaves_no_half_checkpoint(tmp_path: Path) -> None:
    final = tmp_path / "ck"

    def good(d: Path) -> None:
        (d / "a.txt").write_text("old")

    def crash(d: Path) -> None:
        (d / "a.txt").write_text("new, half written")
        raise OSError("disk full")

    atomic_dir(final, good)
    with pytest.raises(OSError, match="disk full"):
        atomic_dir(final, crash)
    assert (final / "a.txt").read_text() == "old"  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # and no temporary folder is left behind
    with pytest.raises(OSError):
        atomic_dir(tmp_path / "new", crash)
    assert not (tmp_path / "new").exists()


def test_a_non_serialisable_config_fails_before_anything_is_published(tmp_path: Path) -> None:
    c = cfg()
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "ck", perturbed_model(c), stage="stage1", step=1, config={"x": object()})
    assert not any(tmp_path.iterdir())


def test_find_latest_picks_the_newest_checkpoint(tmp_path: Path) -> None:
    c = cfg()
    model = perturbed_model(c)
    for stage, step in (("stage1", 10), ("stage1", 20), ("stage2", 5)):
        save_checkpoint(tmp_path / stage / f"checkpoint-{step:06d}", model, stage=stage, step=step, config={})
    assert find_latest(tmp_path) == tmp_path / "stage2" / "checkpoint-000005"
    assert find_latest(tmp_path / "stage1") == tmp_path / "stage1" / "checkpoint-000020"
    with pytest.raises(CheckpointError, match="no checkpoint"):
        find_latest(tmp_path / "empty")
