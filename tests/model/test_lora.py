"""LoRA on the language model only, parameter groups, strict adapter state dicts, peft compatibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from model.lora import (
    DEFAULT_TARGETS,
    apply_lora,
    load_lora_state_dict,
    lora_state_dict,
    parameter_groups,
    save_lora_adapter,
    target_regex,
)
from model.tlm import TLM, FusarGPT, TLMConfig
from tests.model.conftest import fresh_base, make_anchors

N_LAYERS = 2  # the tiny base's decoder layers


def _lora_model(tlm: bool = True) -> FusarGPT:
    torch.manual_seed(0)
    return apply_lora(FusarGPT(fresh_base(), TLM(TLMConfig(), 64) if tlm else None))


def _perturb_lora(model: FusarGPT, seed: int = 1) -> None:
    """LoRA B starts at zero (the adapter is a no-op); give it values so the adapter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_lora_lands_only_on_the_language_model() -> None:
    model = _lora_model()
    wrapped = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and n.endswith(DEFAULT_TARGETS)]
    assert len(wrapped) == 7 * N_LAYERS
    assert all(".language_model.layers." in n for n in wrapped)
    assert not any("visual" in n for n, _ in model.named_parameters() if ".lora_" in n)
    # the vision tower has gate/up/down_proj too: the regex must not match them
    assert any(n.endswith("visual.blocks.0.mlp.gate_proj") for n, _ in model.named_modules())
    import re

    rx = re.compile(target_regex(DEFAULT_TARGETS))
    assert not rx.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert rx.fullmatch("model.language_model.layers.11.mlp.down_proj")


def test_parameter_groups_partition_and_trainability() -> None:
    model = _lora_model()
    groups = parameter_groups(model)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(groups["lora"] + groups["tlm"] + groups["base"]) == sorted(names)
    assert len(groups["lora"]) == 2 * 7 * N_LAYERS and len(groups["tlm"]) == 4
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(groups["lora"]) | set(groups["tlm"])  # base frozen, TLM trainable


def test_fresh_lora_is_a_no_op_and_gradients_reach_it(tiny: Any, batch: dict) -> None:
    base, _ = tiny
    model = _lora_model(tlm=False)
    out = model(**batch)
    assert torch.allclose(out.logits, base(**batch).logits, atol=1e-6)
    out.loss.backward()
    b_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in b_grads)


def test_lora_state_dict_round_trips_strictly(batch: dict) -> None:
    src = _lora_model()
    _perturb_lora(src)
    sd = lora_state_dict(src)
    assert len(sd) == 2 * 7 * N_LAYERS and all("lora_" in k and ".default." not in k for k in sd)
    dst = _lora_model()
    dst.tlm = src.tlm  # compare the adapters only
    load_lora_state_dict(dst, sd)
    assert all(torch.equal(a, b) for a, b in zip(sd.values(), lora_state_dict(dst).values(), strict=True))
    a = make_anchors((3, 1))
    with torch.no_grad():
        assert torch.allclose(src(**batch, **a).logits, dst(**batch, **a).logits, atol=1e-6)
    with pytest.raises(KeyError, match="missing"):
        load_lora_state_dict(dst, dict(list(sd.items())[1:]))
    with pytest.raises(KeyError, match="unexpected"):
        load_lora_state_dict(dst, sd | {"base_model.model.extra.lora_A.weight": torch.zeros(1)})
    bad = dict(sd)
    first = next(iter(bad))
    bad[first] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        load_lora_state_dict(dst, bad)


def test_lora_keys_from_parameter_names_are_peft_keys() -> None:
    """The FSDP path (names with FSDP's prefix, read inside summon_full_params) gives peft's own keys."""
    from model.lora import FSDP_PREFIX, _peft, lora_keys_from_names

    model = _lora_model()
    _perturb_lora(model)
    named = dict(_peft(model).named_parameters())
    wrapped = {k.replace(".layers.0.", f".layers.0.{FSDP_PREFIX}"): v for k, v in named.items()}
    assert any(FSDP_PREFIX in k for k in wrapped)
    expect, got = lora_state_dict(model), lora_keys_from_names(wrapped)
    assert got.keys() == expect.keys() and all(torch.equal(got[k], expect[k]) for k in expect)


def test_saved_adapter_loads_in_stock_peft(tmp_path: Path, batch: dict) -> None:
    model = _lora_model(tlm=False)
    _perturb_lora(model)
    folder = save_lora_adapter(model, tmp_path / "adapter")
    on_disk = load_file(str(folder / "adapter_model.safetensors"))
    ours = lora_state_dict(model)
    assert set(on_disk) == set(ours)
    stock = PeftModel.from_pretrained(fresh_base(), str(folder))
    with torch.no_grad():
        assert torch.allclose(stock(**batch).logits, model(**batch).logits, atol=1e-6)
        assert not torch.allclose(stock(**batch).logits, fresh_base()(**batch).logits, atol=1e-4)


def test_apply_lora_errors() -> None:
    model = _lora_model()
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)
    with pytest.raises(ValueError, match="no language-model module matched"):
        apply_lora(FusarGPT(fresh_base(), None), targets=("qkv",))
    with pytest.raises(ValueError, match="no LoRA"):
        lora_state_dict(FusarGPT(fresh_base(), None))
