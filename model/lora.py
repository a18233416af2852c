"""LoRA on the language model of a FusarGPT (peft), parameter groups, and strict adapter save / load.

Qwen's vision tower also has modules named gate_proj / up_proj / down_proj, so the targets are matched by
a regex anchored on `language_model.layers.<i>`: a plain name list would put LoRA on the ViT as well.
The state dict uses peft's own key layout (what `PeftModel.from_pretrained` reads from
adapter_model.safetensors), so an adapter we save loads in stock peft and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import Tensor

from model.tlm import FusarGPT

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_NAME = "default"


def target_regex(targets: Sequence[str]) -> str:
    """A regex (peft full-matches it against module names) for `targets` in the LLM's decoder layers only."""
    if not targets:
        raise ValueError("apply_lora needs at least one target module name, e.g. q_proj")
    names = "|".join(re.escape(t) for t in targets)
    return rf"^(?:.*\.)?language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})$"


def apply_lora(
    model: FusarGPT,
    *,
    r: int = 8,
    alpha: int = 32,
    dropout: float = 0.05,
    targets: Sequence[str] = DEFAULT_TARGETS,
) -> FusarGPT:
    """Wrap model.base in a peft LoRA model (base weights frozen); the TLM stays a plain trainable module.

    In place (model.base becomes a PeftModel); returns model for chaining.
    """
    if isinstance(model.base, PeftModel):
        raise ValueError(
            "apply_lora: this model already has LoRA; load the adapter with load_lora_state_dict"
        )
    regex = target_regex(targets)
    if not any(re.fullmatch(regex, name) for name, _ in model.base.named_modules()):
        raise ValueError(f"apply_lora: no language-model module matched {list(targets)}; check the names")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=regex, bias="none")
    was_training = model.base.training
    model.base = get_peft_model(model.base, cfg, adapter_name=ADAPTER_NAME)
    model.base.train(was_training)  # new dropout modules follow the base's mode (eval: no dropout)
    return model


def _peft(model: FusarGPT) -> PeftModel:
    if not isinstance(model.base, PeftModel):
        raise ValueError("this FusarGPT has no LoRA; call model.lora.apply_lora(model) first")
    return model.base


FSDP_PREFIX = "_fsdp_wrapped_module."  # what FSDP inserts into the names of the modules it wraps


def lora_state_dict(model: FusarGPT) -> dict[str, Tensor]:
    """The LoRA weights under peft's adapter_model.safetensors keys (adapter name stripped).

    Under FSDP (inside summon_full_params, where the parameters are whole) the wrapped layers' module names
    carry FSDP's prefix and peft's get_peft_model_state_dict finds none of their LoRA weights (it matches
    module names against state-dict keys): there the keys are made from the parameter names directly."""
    peft_model = _peft(model)
    named = dict(peft_model.named_parameters())
    if any(FSDP_PREFIX in k for k in named):
        return lora_keys_from_names(named)
    sd: dict[str, Tensor] = get_peft_model_state_dict(peft_model, adapter_name=ADAPTER_NAME)
    return sd


def lora_keys_from_names(named: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """peft's adapter keys from parameter names: FSDP's prefix and the adapter name removed
    ('...q_proj.lora_A.default.weight' -> '...q_proj.lora_A.weight'), as get_peft_model_state_dict writes them
    for this adapter (no bias, no modules_to_save; tests/model/test_lora.py checks the two agree)."""
    return {
        k.replace(FSDP_PREFIX, "").replace(f".{ADAPTER_NAME}.", "."): v.detach()
        for k, v in named.items()
        if "lora_" in k
    }


def load_lora_state_dict(model: FusarGPT, sd: dict[str, Tensor], strict: bool = True) -> None:
    """Load LoRA weights saved by `lora_state_dict` (or peft); strict: missing or extra keys are errors."""
    peft_model = _peft(model)
    expected = set(lora_state_dict(model))
    if strict:
        missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
        if missing or extra:
            raise KeyError(
                f"LoRA state dict does not match the model: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(extra)} unexpected (e.g. {extra[:2]}); was it saved with the same r / targets / base?"
            )
        for k, v in lora_state_dict(model).items():
            if tuple(sd[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"LoRA weight {k} has shape {tuple(sd[k].shape)}, the model {tuple(v.shape)}"
                )
    result = set_peft_model_state_dict(peft_model, sd, adapter_name=ADAPTER_NAME)
    rejected = list(getattr(result, "unexpected_keys", None) or [])
    if strict and rejected:
        raise KeyError(f"peft rejected LoRA keys {rejected[:3]}")


def save_lora_adapter(model: FusarGPT, folder: str | Path) -> Path:
    """Write adapter_model.safetensors + adapter_config.json, loadable by `PeftModel.from_pretrained`."""
    folder = Path(folder)
    _peft(model).save_pretrained(str(folder), selected_adapters=[ADAPTER_NAME])
    return folder


def parameter_groups(model: FusarGPT) -> dict[str, list[str]]:
    """Parameter names by role: "lora" (adapter matrices), "tlm" (the TLM MLP), "base" (everything else)."""
    groups: dict[str, list[str]] = {"lora": [], "tlm": [], "base": []}
    for name, _ in model.named_parameters():
        if name.startswith("tlm."):
            groups["tlm"].append(name)
        elif ".lora_" in name:
            groups["lora"].append(name)
        else:
            groups["base"].append(name)
    return groups
