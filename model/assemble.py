"""The trainable model as the trainer assembles it: the base (tiny, hub id or folder), the TLM, LoRA, the
speed settings of model/efficiency.py, which parameter groups train, and the autocast every forward runs
under. Split from the loop (model/train.py), which imports these names from here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from model.config import TrainConfig
from model.tlm import RELEASE_FORMAT, TLM, FusarGPT, TLMConfig


# == runtime ========================================================================================
def autocast_on(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast on GPU when cfg.bf16; plain fp32 on CPU (CPU bf16 is slow and not what we test)."""
    return device.type == "cuda" and cfg.bf16


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if autocast_on(cfg, device) else contextlib.nullcontext()
    )


# == the model ======================================================================================
def build_model(
    cfg: TrainConfig, device: torch.device | None = None, *, tlm_config: TLMConfig | str | None = "config"
) -> tuple[FusarGPT, Any]:
    """Base (tiny / hub id / folder) + TLM + LoRA, seeded by cfg.seed; all base weights frozen.

    tlm_config: "config" builds the TLM the training config describes (if enabled); a TLMConfig (e.g.
    a checkpoint's tlm_config.json) builds that one; None builds no TLM."""
    from model.base import build_tiny_base, hidden_size, load_base
    from model.efficiency import compile_layers, compile_refusal, set_checkpointing
    from model.lora import apply_lora

    device = device or torch.device("cpu")
    refusal = cfg.compile and compile_refusal(cfg.gradient_checkpointing, device.type, torch.__version__)
    if refusal:  # before any weight is loaded
        raise ValueError(refusal)
    torch.manual_seed(cfg.seed)
    family = cfg.tiny_family
    if family is not None:
        base, processor = build_tiny_base(family, seed=cfg.seed)
    else:
        dtype = torch.bfloat16 if (device.type == "cuda" and cfg.bf16) else torch.float32
        attn = attention_implementation(cfg.attn_implementation, device)
        base, processor = load_base(cfg.base, dtype=dtype, attn_implementation=attn)
    if isinstance(tlm_config, str):
        tlm_config = (
            TLMConfig(
                sigma=cfg.tlm.sigma,
                hidden_mult=cfg.tlm.hidden_mult,
                image_size=cfg.image_size,
                identity_init=cfg.tlm.identity_init,
                patch_centres=cfg.tlm.patch_centres,
                format=RELEASE_FORMAT if cfg.tlm.release else None,
            )
            if cfg.tlm.enabled
            else None
        )
    # float32 even on a bf16 base: it is trained
    tlm = TLM(tlm_config, hidden_size(base)) if tlm_config is not None else None
    model = apply_lora(
        FusarGPT(base, tlm),
        r=cfg.lora.r,
        alpha=cfg.lora.alpha,
        dropout=cfg.lora.dropout,
        targets=cfg.lora.targets,
    )
    if cfg.gradient_checkpointing:
        set_checkpointing(model, True)  # the LLM's layers only; the frozen vision tower stays out of autograd
    model.ce_chunk = cfg.ce_chunk
    if cfg.compile:
        compile_layers(model)
    return model.to(device), processor


def attention_implementation(requested: str | None, device: torch.device) -> str:
    """The config's choice, or FlashAttention-2 on CUDA when the flash_attn package is installed, else SDPA."""
    if requested:
        return requested
    import importlib.util

    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def set_trainable(model: FusarGPT, groups: tuple[str, ...]) -> dict[str, int]:
    """requires_grad = True exactly for the parameters of `groups` ("lora", "tlm"); returns counts per group."""
    from model.lora import parameter_groups

    by_group = parameter_groups(model)
    missing = [g for g in groups if not by_group[g]]
    if missing:
        raise ValueError(
            f"train lists {missing} but the model has no such parameters (is tlm.enabled false?)"
        )
    trainable = {n for g in groups for n in by_group[g]}
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    return {g: sum(sizes[n] for n in names) for g, names in by_group.items()}


__all__ = ["attention_implementation", "autocast", "autocast_on", "build_model", "set_trainable"]
