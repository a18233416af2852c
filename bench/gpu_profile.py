"""The GPU step under the torch profiler, the same-run matmul peak, and the step's candidate speed-ups
(bench/gpu_step.py's later phases; see there for the model and batches).

- `matmul_peak`: TFLOP/s of a large bf16 matrix product on this card, measured in the same run, the
  ceiling the step's model FLOP utilisation is also reported against (besides the spec-sheet peak).
- `model_flops`: the step's matmul FLOPs by part, counted from the model's own weights: the frozen LLM
  4 N T (forward + input gradients), the lm_head 4 V D on supervised tokens, the frozen vision tower
  2 N P (forward only, P patches: nothing upstream of it trains), LoRA 6 N T, the TLM's MLP, and when
  the TLM trains, the input gradient of the first decoder layer (2 N T over its q, k, v, gate and up
  projections), which only the TLM needs: without it the backward stops at layer 0's LoRA. Attention
  scores are left out, so the utilisation is a lower bound.
- `profile_step`: one step under torch.profiler: GPU busy time against the step's wall time (the share
  the GPU idles while the host launches), kernel time by kind (matmul, attention, elementwise / other),
  the TLM's own GPU time (a `tlm` range around its modulation), host-device synchronisations, and the
  top kernels.
- `variants`: the same batch with one thing changed at a time, interleaved with the default (the trainer's
  setup): whole logits instead of the chunked cross-entropy; no LoRA dropout; peft's float32 cast of
  every LoRA input (what model/efficiency.py's lora_in_autocast removes); the frozen vision tower under
  autograd (what transformers' checkpointing hooks did, removed by set_checkpointing); the vision
  tower's attention one call per window (what model/vision_windows.py batches); every index computed
  on the device (the step before model/host_index.py); then torch.compile of each decoder layer, which
  cannot be undone.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from bench.train_tlm_overhead import interleaved, summary, sync, train_step
from model.tlm import FusarGPT

KINDS = {  # kernel name substrings -> kind (first match wins)
    "attention": ("flash", "fmha", "attention", "sdpa", "softmax"),
    "matmul": ("gemm", "cutlass", "xmma", "nvjet", "cublas", "wgmma", "matmul", "splitk"),
}
FIRST_LAYER_INPUTS = re.compile(
    r"language_model\.layers\.0\.(?:self_attn\.[qkv]_proj|mlp\.(?:gate|up)_proj)\.(?:base_layer\.)?weight$"
)
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def matmul_peak(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """Measured bf16 TFLOP/s of an n x n x n product (mean of `repeats` after 3 warm-ups); None on CPU."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def model_flops(
    model: FusarGPT, *, tokens: int, supervised: int, patches: int, anchors: int, trains_tlm: bool
) -> dict:
    """Matmul FLOPs of one training step by part (see the module docstring); attention scores excluded."""
    llm = vision = lora = head = tlm = first = 0
    for name, p in model.named_parameters():
        if p.ndim != 2:
            continue  # norms and biases: no matmul
        if FIRST_LAYER_INPUTS.search(name):
            first += p.numel()
        if name.startswith("tlm."):
            tlm += p.numel()
        elif ".lora_" in name:
            lora += p.numel()
        elif "lm_head" in name:
            head += p.numel()
        elif "visual" in name:
            vision += p.numel()
        elif "embed_tokens" not in name:  # the embedding is a lookup
            llm += p.numel()
    parts = {
        "llm": 4.0 * llm * tokens,
        "lm_head": 4.0 * head * supervised,
        "vision": 2.0 * vision * patches,
        "lora": 6.0 * lora * tokens,
        "tlm": (6.0 if trains_tlm else 4.0) * tlm * anchors,  # its MLP runs once per anchor
        "tlm_input_grad": 2.0 * first * tokens if trains_tlm else 0.0,
    }
    return parts | {"total": sum(parts.values())}


def kind_of(name: str) -> str:
    low = name.lower()
    return next((k for k, subs in KINDS.items() if any(s in low for s in subs)), "other")


@contextlib.contextmanager
def tlm_range(model: FusarGPT) -> Iterator[None]:
    """Wrap the TLM's modulation in a profiler range named `tlm` (bench only; undone on exit)."""
    if model.tlm is None:
        yield
        return
    tlm = model.tlm
    inner = tlm.modulation

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function("tlm"):
            return inner(*args, **kwargs)

    tlm.modulation = wrapped  # type: ignore[method-assign]
    try:
        yield
    finally:
        del tlm.modulation  # back to the class's method


def profile_step(
    model: FusarGPT, batch: dict, opt: torch.optim.Optimizer | None, device: torch.device
) -> dict:
    """One (warm) training step under torch.profiler: busy / idle GPU time, kernel kinds, TLM, syncs."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with tlm_range(model):
        train_step(model, batch, opt)  # warm
        sync(device)
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            train_step(model, batch, opt)
            sync(device)
            wall = time.perf_counter() - t0
    events = prof.key_averages()
    cuda = torch.autograd.DeviceType.CUDA
    # GPU-side copies of host ranges (`tlm`, the optimizer's step) are annotations, not kernels: their
    # names are also host events' names, and counting them would count their kernels twice
    host = {e.key for e in events if getattr(e, "device_type", None) != cuda}
    kernels = [
        e
        for e in events
        if getattr(e, "device_type", None) == cuda
        and not getattr(e, "is_user_annotation", False)
        and e.key not in host
    ]
    us = {e.key: e.self_device_time_total for e in kernels}
    busy = sum(us.values()) / 1e6
    by_kind: dict[str, float] = {}
    for k, v in us.items():
        by_kind[kind_of(k)] = by_kind.get(kind_of(k), 0.0) + v / 1e6
    tlm_gpu = next((e.device_time_total / 1e6 for e in events if e.key == "tlm"), None)
    tlm_cpu = next((e.cpu_time_total / 1e6 for e in events if e.key == "tlm"), None)
    syncs = {e.key: e.count for e in events if e.key.startswith(SYNC_EVENTS)}
    # host-device synchronisations inside the TLM's own range (tests/model/test_tlm_fused.py wants none)
    spans = [e.time_range for e in prof.events() if e.name == "tlm"]
    tlm_syncs = sum(
        1
        for e in prof.events()
        if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize")
        and any(r.start <= e.time_range.start <= r.end for r in spans)
    )
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:20]
    return {
        "wall_s": wall,
        "gpu_busy_s": busy,
        "gpu_idle_share": max(0.0, 1 - busy / wall) if device.type == "cuda" else None,
        "kernel_launches": sum(e.count for e in kernels),
        "gpu_s_by_kind": by_kind,
        "tlm_gpu_s": tlm_gpu,
        "tlm_cpu_s": tlm_cpu,
        "host_syncs": syncs,
        "tlm_host_syncs": tlm_syncs,
        "top_kernels": [
            {
                "name": e.key[:120],
                "kind": kind_of(e.key),
                "calls": e.count,
                "gpu_s": e.self_device_time_total / 1e6,
            }
            for e in top
        ],
    }


@contextlib.contextmanager
def no_lora_dropout(model: nn.Module) -> Iterator[None]:
    """Every LoRA dropout swapped for nn.Identity (what peft builds for dropout 0), then put back."""
    swapped: list[tuple[nn.ModuleDict, str, nn.Module]] = []
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for key, d in list(drops.items()):
                if not isinstance(d, nn.Identity):
                    swapped.append((drops, key, d))
                    drops[key] = nn.Identity()
    try:
        yield
    finally:
        for drops, key, d in swapped:
            drops[key] = d


@contextlib.contextmanager
def lora_cast_float32(model: nn.Module) -> Iterator[None]:
    """peft's default for the span (each LoRA input cast to the adapters' float32), then as it was."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from model.efficiency import lora_in_autocast

    was_on = not any(
        getattr(m, "cast_input_dtype_enabled", True) for m in model.modules() if isinstance(m, BaseTunerLayer)
    )
    lora_in_autocast(model, on=False)
    try:
        yield
    finally:
        lora_in_autocast(model, on=was_on)


@contextlib.contextmanager
def vision_under_autograd(model: FusarGPT) -> Iterator[None]:
    """transformers' input-require-grads hooks for the span (the vision tower then runs under autograd)."""
    from model.efficiency import drop_input_grad_hooks

    model.base.get_base_model().enable_input_require_grads()
    try:
        yield
    finally:
        drop_input_grad_hooks(model)


@contextlib.contextmanager
def per_window_attention(model: FusarGPT) -> Iterator[None]:
    """transformers' SDPA path for the vision tower for the span (one call per window), then as it was."""
    from model.base import visual_module

    config = visual_module(model.base).config
    was = config._attn_implementation
    config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = was


def variants(
    model: FusarGPT,
    batch: dict,
    opt: torch.optim.Optimizer | None,
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    compile_too: bool,
    device_batch: dict | None = None,
) -> dict[str, Any]:
    """Step time (and peak memory) of the default against one change at a time, interleaved on one batch.

    device_batch: the same batch with every input on the device and no host-side indices (the step
    before model/host_index.py), run with per-window attention as "device_index".
    torch.compile of the decoder layers cannot be undone, so it runs last and only when compile_too."""
    chunk = model.ce_chunk

    @contextlib.contextmanager
    def whole_logits() -> Iterator[None]:
        model.ce_chunk = 0
        try:
            yield
        finally:
            model.ce_chunk = chunk

    changes: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "default": contextlib.nullcontext,
        "whole_logits": whole_logits,
        "no_lora_dropout": lambda: no_lora_dropout(model),
        "lora_cast_float32": lambda: lora_cast_float32(model),
        "vision_under_autograd": lambda: vision_under_autograd(model),
        "per_window_attention": lambda: per_window_attention(model),
    }

    def runner(
        change: Callable[[], contextlib.AbstractContextManager[None]], inputs: dict = batch
    ) -> Callable[[], float]:
        def fn() -> float:
            with change():
                return train_step(model, inputs, opt)

        return fn

    steps = {name: runner(change) for name, change in changes.items()}
    if device_batch is not None:
        steps["device_index"] = runner(lambda: per_window_attention(model), device_batch)
    out: dict[str, Any] = {}
    times = interleaved(steps, repeats, warmup, device)
    out["step_s"] = {k: summary(v) for k, v in times.items()}
    if device.type == "cuda":
        for name, fn in steps.items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            out.setdefault("peak_mem_gib", {})[name] = torch.cuda.max_memory_allocated(device) / 2**30
    if compile_too:
        from model.efficiency import compile_layers

        t0 = time.perf_counter()
        out["compiled_layers"] = compile_layers(model)
        steps["default"]()  # the compile happens here
        sync(device)
        out["compile_s"] = time.perf_counter() - t0
        times = interleaved({"compiled": steps["default"]}, repeats, 1, device)
        out["step_s"]["compiled"] = summary(times["compiled"])
    base = out["step_s"]["default"]["median_s"]
    out["speedup_vs_default"] = {k: base / v["median_s"] for k, v in out["step_s"].items()}
    return out
