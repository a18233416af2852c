"""model/efficiency.py: the speed-ups change no gradient.

- transformers' checkpointing puts the frozen vision tower under autograd (its hooks make the patch
  embedding's output require grad) and leaves that behind when switched off; `set_checkpointing` does
  neither, and the LoRA and TLM gradients equal those of the step without checkpointing.
- `lora_in_autocast` gives bit-identical loss and gradients under bf16 autocast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.base import hidden_size, visual_module
from model.efficiency import drop_input_grad_hooks, lora_in_autocast, set_checkpointing
from model.lora import apply_lora
from model.tlm import TLM, FusarGPT, TLMConfig
from tests.model.conftest import fresh_base, make_anchors


def build(dtype: torch.dtype = torch.float32) -> FusarGPT:
    torch.manual_seed(0)
    base = fresh_base().to(dtype)
    model = apply_lora(FusarGPT(base, TLM(TLMConfig(), hidden_size(base))), dropout=0.0)
    model.train()
    return model


def vision_output_requires_grad(model: FusarGPT, batch: dict) -> bool:
    """Whether the vision tower's output was part of the autograd graph in one forward."""
    seen: list[bool] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        seen.append(bool(output.pooler_output.requires_grad))

    handle = visual_module(model.base).register_forward_hook(hook)
    try:
        model.bypass_tlm = True  # the tokens as the vision tower made them
        model(**batch, **make_anchors((3, 2)))
    finally:
        model.bypass_tlm = False
        handle.remove()
    return seen[0]


def grads(model: FusarGPT, batch: dict) -> dict[str, torch.Tensor]:
    loss = model(**batch, **make_anchors((3, 2))).loss
    loss.backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for p in model.parameters():
        p.grad = None
    return out


def test_transformers_checkpointing_puts_the_frozen_vision_tower_under_autograd(batch: dict) -> None:
    model = build()
    assert not vision_output_requires_grad(model, batch)
    model.base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert vision_output_requires_grad(model, batch)  # the waste set_checkpointing removes
    model.base.activation_checkpointing_disable()
    assert vision_output_requires_grad(model, batch)  # and it outlives checkpointing
    assert drop_input_grad_hooks(model) > 0
    assert not vision_output_requires_grad(model, batch)


def test_set_checkpointing_keeps_the_vision_tower_out_and_every_gradient(batch: dict) -> None:
    model = build()
    plain = grads(model, batch)
    set_checkpointing(model, True)
    assert not vision_output_requires_grad(model, batch)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.base.modules())
    assert not any(getattr(m, "gradient_checkpointing", False) for m in visual_module(model.base).modules())
    ckpt = grads(model, batch)
    assert (
        set(ckpt) == set(plain)
        and any(n.startswith("tlm.") for n in ckpt)
        and any(".lora_" in n for n in ckpt)
    )
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    set_checkpointing(model, False)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.base.modules())
    assert not vision_output_requires_grad(model, batch)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lora_in_autocast_gives_the_same_bf16_step(batch: dict) -> None:
    model = build(torch.bfloat16)  # bf16 base, float32 adapters and TLM (what the trainer builds on a GPU)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if ".lora_" in n)
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = grads(model, bf16)
        assert lora_in_autocast(model) == 2 * 7  # two decoder layers x seven target projections
        kept = grads(model, bf16)
    assert set(kept) == set(cast)
    for name in cast:
        assert torch.equal(kept[name], cast[name]), name
    with pytest.raises(RuntimeError):  # the flag took effect: outside autocast bf16 meets float32 adapters
        grads(model, bf16)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_compiled_layers_under_checkpointing_give_the_same_gradients(batch: dict) -> None:
    """`compile: true` with `gradient_checkpointing: true` (the paper's recipe): each decoder layer
    compiled inside non-reentrant checkpointing trains like the eager model (torch.compile's default
    backend on this CPU; a GPU compiles the same graphs with its own kernels)."""
    from model.efficiency import compile_layers

    plain = grads(build(), batch)
    model = build()
    set_checkpointing(model, True)
    assert compile_layers(model) == 2
    torch._dynamo.reset()
    for _ in range(2):  # the first step compiles; the second runs the compiled layers
        got = grads(model, batch)
        assert set(got) == set(plain)
        for name in plain:
            torch.testing.assert_close(got[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("checkpointing", "device", "version", "refused"),
    [
        (True, "cuda", "2.11.0+cu130", True),  # the H200 run that failed
        (True, "cuda", "2.4.1", True),
        (True, "cuda", "2.12.0", False),  # not measured: allowed
        (True, "cpu", "2.11.0", False),  # CPU compiles it (the test above)
        (False, "cuda", "2.11.0+cu130", False),  # compiled without checkpointing: measured, 1.33x
    ],
)
def test_compile_refusal(checkpointing: bool, device: str, version: str, refused: bool) -> None:
    from model.efficiency import compile_refusal

    msg = compile_refusal(checkpointing, device, version)
    assert (msg is not None) == refused
    if msg:
        assert "gradient_checkpointing" in msg and version in msg and "\n" not in msg


def test_trainer_refuses_compile_with_checkpointing_before_loading_the_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """build_model stops with the one-line reason before any weight is loaded (no GPU touched here)."""
    from model.assemble import build_model
    from model.config import load_config

    tiny = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny.yaml"
    cfg = load_config(tiny).model_copy(update={"compile": True, "gradient_checkpointing": True})
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    with pytest.raises(ValueError, match="set one of them to false"):
        build_model(cfg, torch.device("cuda"))
