"""How a training step runs fast without changing its maths (issue #13, measured in bench/RESULTS.md).

- `set_checkpointing`: non-reentrant activation checkpointing of the LLM's decoder layers only. Enabling
  it through transformers (and peft) also registers forward hooks that make the output of every input
  embedding require grad, the vision tower's patch embedding included: the frozen vision tower then runs
  under autograd and is backpropagated (checkpointed: recomputed too) for nothing, and the hooks stay
  after checkpointing is switched off. Non-reentrant checkpointing needs none of them, nothing upstream of
  the TLM trains, so they are removed; the TLM's and LoRA's gradients are unchanged
  (tests/model/test_efficiency.py).
- `lora_in_autocast`: under bf16 autocast peft casts each LoRA layer's input to the adapter's float32
  (a copy of every activation, the dropout in float32, a float32 add) only for autocast to cast it back to
  bf16 for the matmul. Switched off, the same bf16 matmuls run on the input as it is. Only where every
  forward runs under autocast (the trainer): without autocast a bf16 input meets float32 adapter weights.
- `compile_layers`: torch.compile of each decoder layer (regional compilation). `compile_refusal` says
  where it is known to fail: with activation checkpointing on CUDA before torch 2.12 (inductor's
  partitioner, "Node ... was invalid, but is output", measured on an H200 with torch 2.11 whether
  checkpointing was set before or after compiling; bench/RESULTS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from model.tlm import FusarGPT


def set_checkpointing(model: FusarGPT, on: bool) -> None:
    """Checkpoint the LLM's decoder layers (non-reentrant) or none; never autograd through the vision tower."""
    from model.base import visual_module

    if on:
        enable = getattr(model.base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # transformers before activation_checkpointing_* existed
            model.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for module in visual_module(model.base).modules():  # frozen and outside autograd: nothing to save
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False  # type: ignore[assignment]
    else:
        disable = getattr(model.base, "activation_checkpointing_disable", None)
        (disable or model.base.gradient_checkpointing_disable)()
    drop_input_grad_hooks(model)


def drop_input_grad_hooks(model: nn.Module) -> int:
    """Remove the make-inputs-require-grad hooks transformers registers (see the module docstring)."""
    from transformers import PreTrainedModel

    n = 0
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and getattr(module, "_require_grads_hooks", None):
            n += len(module._require_grads_hooks)
            module.disable_input_require_grads()
    return n


def lora_in_autocast(model: nn.Module, on: bool = True) -> int:
    """Stop (on) or restart peft casting LoRA inputs to the adapters' float32 (stop it only for models run
    under bf16 autocast alone); returns how many LoRA layers were set."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for m in layers:
        m.cast_input_dtype_enabled = not on  # type: ignore[assignment]  # as peft.helpers.disable_input_dtype_casting
    return len(layers)


# compile + checkpointing failed in inductor on CUDA with torch 2.11 (H200); later versions are unmeasured
COMPILE_WITH_CHECKPOINTING_FROM = (2, 12)


def compile_refusal(checkpointing: bool, device_type: str, torch_version: str) -> str | None:
    """Why `compile: true` cannot run with these settings (a one-line message), or None."""
    if not checkpointing or device_type != "cuda":
        return None
    major, minor = (int(x) for x in torch_version.split("+")[0].split(".")[:2])
    if (major, minor) >= COMPILE_WITH_CHECKPOINTING_FROM:
        return None
    return (
        f"compile: true with gradient_checkpointing: true fails on CUDA with torch {torch_version} (inductor: "
        "'Node ... was invalid, but is output', measured on an H200, bench/RESULTS.md); set one of them to "
        "false (compiled without checkpointing, batch 8 of the 7B step fits in 80 GiB)"
    )


def compile_layers(model: nn.Module) -> int:
    """torch.compile every decoder layer in place (regional compilation: one graph reused by all layers,
    seconds to compile instead of minutes for the whole model); returns how many were compiled."""
    n = 0
    for name, module in model.named_modules():
        parent, _, index = name.rpartition(".")
        if index.isdigit() and parent.endswith("layers"):
            module.compile(dynamic=True)
            n += 1
    return n
