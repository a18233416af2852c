"""Benchmark: the stage-1 training step at several batch sizes, with and without gradient checkpointing, and
the TLM's overhead, on one model built once (the GPU part of bench/gpu_check.sh).

Real (default): a random Qwen2.5-VL-7B-sized model (bench/train_tlm_overhead.py's config, nothing
downloaded), bf16, LoRA r 8 + float32 TLM, AdamW, the chunked cross-entropy (model/fused_ce.py). Chats
have seeded lengths between 60 % and 100 % of --seq-len (a caption set is not one length); each batch
is cut from a length-sorted group (model/batching.py's grouping), so its padding share is what the
trainer's `group_by_length` gives. Per configuration: step time, real (non-pad) tokens/s, padding share,
peak memory, and the model FLOP utilisation (parameter matmul FLOPs, 4 N per token for the frozen base
and 6 N for LoRA / TLM, attention scores excluded, over the GPU's dense bf16 peak). A configuration that
runs out of memory is recorded as such. Then the TLM overhead: stage 1 / stage 2 / TLM bypassed steps,
interleaved, at the TLM batch sizes.

--tiny --device cpu: the same code on the tiny model of model/base.py, for tests.

    python -m bench.gpu_step --out $OUT/gpu_step.json               # CUDA, 7B-sized
    python -m bench.gpu_step --tiny --device cpu --out /tmp/s.json  # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.gpu_profile import matmul_peak, model_flops, per_window_attention, profile_step, variants
from bench.train_tlm_overhead import (
    build_real,
    count,
    flops,
    interleaved,
    summary,
    sync,
    to_device,
    train_step,
)
from model.base import build_tiny_base, hidden_size
from model.batching import padding_share
from model.efficiency import set_checkpointing
from model.host_index import host_index
from model.lora import apply_lora
from model.tlm import TLM, FusarGPT, TLMConfig

log = logging.getLogger("bench.gpu_step")
# dense bf16 tensor-core peaks (FLOP/s) of the cards we may be lent; others: MFU not reported
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def chat_lengths(n: int, seq_len: int, seed: int = 0) -> list[int]:
    """Seeded caption lengths (text characters ~ tokens for the tiny tokenizer) in [0.6, 1.0] x seq_len."""
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(int(0.6 * seq_len), seq_len + 1, n)]


def grouped_batch(lengths: list[int], batch: int) -> list[int]:
    """The first batch of a length-sorted group of 8 batches (what group_by_length 8 hands the loop)."""
    return sorted(lengths)[:batch] if batch > 1 else lengths[:1]


def make_batch(processor: Any, lengths: list[int], *, image: int, anchors: int, seed: int = 0) -> dict:
    """One image + a caption of each given text length per chat, labels on the assistant text only."""
    rng = np.random.default_rng(seed)
    words = "the harbour has two long piers and several ships moored along the eastern quay "
    chats, images = [], []
    for n in lengths:
        text = (words * (n // len(words) + 1))[: max(n, 8)]
        images.append(Image.fromarray(rng.integers(0, 256, (image, image, 3), dtype=np.uint8)))
        chats.append(
            [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]},
                {"role": "assistant", "content": [{"type": "text", "text": text}]},
            ]
        )
    texts = [processor.apply_chat_template(c, tokenize=False) for c in chats]
    inputs = dict(processor(text=texts, images=images, return_tensors="pt", padding=True))
    inputs["labels"] = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    b = len(lengths)
    ys, xs = torch.meshgrid(
        (torch.arange(anchors) + 0.5) / anchors, (torch.arange(anchors) + 0.5) / anchors, indexing="ij"
    )
    inputs["aef_positions"] = torch.stack([ys.flatten(), xs.flatten()], -1)[None].repeat(b, 1, 1)
    g = torch.Generator().manual_seed(seed)
    inputs["aef_features"] = torch.randn(b, anchors * anchors, 64, generator=g) * 0.1
    inputs["aef_mask"] = torch.ones(b, anchors * anchors, dtype=torch.bool)
    return inputs


def build(args: argparse.Namespace, device: torch.device) -> tuple[FusarGPT, Any]:
    _, processor = build_tiny_base(seed=0)  # its token ids match the 7B config of train_tlm_overhead
    if args.tiny:
        base, _ = build_tiny_base(seed=0)
        torch.manual_seed(0)
        model = apply_lora(FusarGPT(base, TLM(TLMConfig(), hidden_size(base)))).to(device)
    else:
        torch.manual_seed(0)
        model = build_real(args, device)
    model.ce_chunk = args.ce_chunk
    model.train()
    return model, processor


def step_configs(
    args: argparse.Namespace,
    model: FusarGPT,
    processor: Any,
    device: torch.device,
    measured_peak: float | None,
    rows: list[dict],
    save: Any,
) -> list[dict]:
    """Step time, tokens/s, padding, memory and MFU for every (batch, checkpointing) pair.

    MFU: the model's matmul FLOPs (bench/gpu_profile.py's model_flops) per second over the spec-sheet bf16
    peak ("mfu") and over the 8192^3 product measured in this run ("mfu_vs_measured_matmul"); "mfu_4nt"
    is the rougher 4 x all parameters x tokens over the measured product (the issue's first figures)."""
    counts = count(model)
    peak = peak_flops(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    for ckpt in args.grad_ckpt:
        set_checkpointing(model, ckpt)
        for b in args.batches:
            pool = chat_lengths(8 * b, args.seq_len, seed=b)
            lengths = grouped_batch(pool, b)
            inputs = make_batch(processor, lengths, image=args.image, anchors=args.anchors)
            mask = inputs["attention_mask"]
            real = int(mask.sum())
            extra = (
                real - sum(lengths)
            ) / b  # visual and template tokens per chat (tiny tokenizer: 1 char 1 token)
            row: dict[str, Any] = {
                "batch": b,
                "grad_ckpt": ckpt,
                "tokens_real": real,
                "tokens_padded": int(mask.numel()),
                "padding_share": padding_share([[int(x) for x in mask.sum(1)]]),
                "padding_share_ungrouped": padding_share([[n + extra for n in pool[:b]]]),
            }
            batch = to_device(host_index(model, inputs), device, dtype)
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                times = []
                for i in range(args.warmup + args.repeats):
                    sync(device)
                    t0 = time.perf_counter()
                    train_step(model, batch, opt)
                    sync(device)
                    if i >= args.warmup:
                        times.append(time.perf_counter() - t0)
            except torch.OutOfMemoryError:
                row["oom"] = True
                opt.zero_grad(set_to_none=True)
                rows.append(row)
                save()
                log.info("%s", json.dumps(row))
                continue
            s = statistics.median(times)
            f = flops(counts, real, args.anchors**2, b, True)
            rough = f["base"] + f["lora"] + f["tlm"]
            supervised = int((inputs["labels"][:, 1:] != -100).sum())
            mf = model_flops(
                model,
                tokens=real,
                supervised=supervised,
                patches=int(inputs["pixel_values"].shape[0]),
                anchors=args.anchors**2 * b,
                trains_tlm=True,
            )
            row |= {
                "step_s": summary(times),
                "tokens_per_s": real / s,
                "model_tflop_per_step": {k: v / 1e12 for k, v in mf.items()},
                "mfu": mf["total"] / s / peak if peak else None,
                "mfu_vs_measured_matmul": mf["total"] / s / (measured_peak * 1e12) if measured_peak else None,
                "mfu_4nt": rough / s / (measured_peak * 1e12) if measured_peak else None,
            }
            if device.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                row["fits_80_gib"] = row["peak_mem_gib"] <= 80.0
            rows.append(row)
            save()
            log.info("%s", json.dumps(row))
    set_checkpointing(model, False)
    return rows


def tlm_overhead(
    args: argparse.Namespace,
    model: FusarGPT,
    processor: Any,
    device: torch.device,
    rows: list[dict],
    save: Any,
) -> list[dict]:
    """Stage 1 (TLM trains) / stage 2 (TLM frozen) / TLM bypassed, same model and batch, interleaved."""
    assert model.tlm is not None
    tlm_params = list(model.tlm.parameters())
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for b in args.tlm_batches:
        inputs = make_batch(processor, [args.seq_len] * b, image=args.image, anchors=args.anchors)
        batch = to_device(host_index(model, inputs), device, dtype)

        def stage(trains: bool, bypass: bool = False, batch: dict = batch) -> Any:
            def fn() -> float:
                for p in tlm_params:
                    p.requires_grad_(trains)
                model.bypass_tlm = bypass
                try:
                    return train_step(model, batch, None)
                finally:
                    model.bypass_tlm = False

            return fn

        steps = {"stage1": stage(True), "stage2": stage(False), "tlm_bypassed": stage(False, True)}
        times = interleaved(steps, args.tlm_repeats, args.warmup, device)
        base_t = statistics.median(times["tlm_bypassed"])
        row = {"batch": b} | {k: summary(v) for k, v in times.items()}
        row["overhead_pct_stage1"] = 100 * (statistics.median(times["stage1"]) / base_t - 1)
        row["overhead_pct_stage2"] = 100 * (statistics.median(times["stage2"]) / base_t - 1)
        # repeat i of each step ran back to back (interleaved): the median of their ratios drifts least
        for name in ("stage1", "stage2"):
            ratios = [a / c for a, c in zip(times[name], times["tlm_bypassed"], strict=True)]
            row[f"overhead_pct_paired_{name}"] = 100 * (statistics.median(ratios) - 1)
        low = min(times["tlm_bypassed"])  # the least disturbed runs: a second estimate of the same ratio
        row["overhead_pct_min_stage1"] = 100 * (min(times["stage1"]) / low - 1)
        row["overhead_pct_min_stage2"] = 100 * (min(times["stage2"]) / low - 1)
        real = int(inputs["attention_mask"].sum())
        size = {
            "tokens": real,
            "supervised": int((inputs["labels"][:, 1:] != -100).sum()),
            "patches": int(inputs["pixel_values"].shape[0]),
            "anchors": args.anchors**2 * b,
        }
        for name, trains in (("stage1", True), ("stage2", False)):
            mf = model_flops(model, **size, trains_tlm=trains)
            row[f"tlm_flop_share_pct_{name}"] = 100 * (mf["tlm"] + mf["tlm_input_grad"]) / mf["total"]
        rows.append(row)
        save()
        log.info("%s", json.dumps(row))
    for p in tlm_params:
        p.requires_grad_(True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the tiny model of model/base.py (tests)")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--grad-ckpt", type=lambda s: s == "on", nargs="+", default=[False, True], help="off / on")
    p.add_argument("--tlm-batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--seq-len", type=int, default=740, help="caption characters ~ tokens (+ 324 visual)")
    p.add_argument("--image", type=int, default=504)
    p.add_argument("--anchors", type=int, default=10)
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tlm-repeats", type=int, default=8, help="interleaved repeats of the TLM overhead")
    p.add_argument("--profile-batch", type=int, default=4, help="the profiled / variant batch (0: skip)")
    p.add_argument("--compile", choices=("on", "off"), default="on", help="variants: also torch.compile")
    p.add_argument(
        "--compiled-steps",
        action="store_true",
        help="torch.compile the decoder layers first (model.compile: true) and measure the steps only",
    )
    p.add_argument("--budget-s", type=float, default=240, help="skip the compile variant past this")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--ce-chunk", type=int, default=4096, help="fused cross-entropy chunk (0: whole logits)")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--vision-depth", type=int, default=32)
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu_step: no CUDA device; use --device cpu --tiny for a dry check")
    modes = args.grad_ckpt
    args.grad_ckpt = False
    t0 = time.perf_counter()
    model, processor = build(args, device)
    args.grad_ckpt = modes
    result: dict[str, Any] = {
        "what": "stage-1 step (forward + backward + AdamW), LoRA r 8 + float32 TLM, chunked CE",
        "model": "tiny" if args.tiny else f"Qwen2.5-VL-7B-sized, random, bf16, {args.attn}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "peak_bf16_flops": peak_flops(device),
        "build_s": time.perf_counter() - t0,
        "ce_chunk": args.ce_chunk,
        "params": (c := count(model)) | {"total": sum(c.values())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a run cut short keeps what it measured
        result["seconds"] = time.perf_counter() - t0
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    measured = matmul_peak(device)
    result["measured_matmul_tflops"] = measured
    if args.compiled_steps:
        from model.efficiency import compile_layers

        result["compiled_layers"] = compile_layers(
            model
        )  # each configuration's first (warm-up) step compiles
        result["model"] += ", decoder layers torch.compile'd"
    result["steps"] = []
    step_configs(args, model, processor, device, measured, result["steps"], save)
    if args.compiled_steps:
        save()
        log.info("wrote %s", args.out)
        return result
    result["tlm_overhead"] = []
    tlm_overhead(args, model, processor, device, result["tlm_overhead"], save)
    if args.profile_batch:
        b = args.profile_batch
        cpu = make_batch(
            processor,
            grouped_batch(chat_lengths(8 * b, args.seq_len, seed=b), b),
            image=args.image,
            anchors=args.anchors,
        )
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        batch = to_device(host_index(model, cpu), device, dtype)
        # the step as it ran before model/host_index.py: every input on the device, indices computed there
        device_batch = {k: v.to(device) for k, v in to_device(cpu, device, dtype).items()}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        result["profile"] = {"batch": b, "grad_ckpt": False} | profile_step(model, batch, opt, device)
        save()
        log.info(
            "profile: %s", json.dumps({k: v for k, v in result["profile"].items() if k != "top_kernels"})
        )
        with per_window_attention(model):
            before = profile_step(model, device_batch, opt, device)
        result["profile_device_index"] = {"batch": b, "grad_ckpt": False} | before
        save()
        log.info(
            "profile, indices on the device: %s",
            json.dumps({k: v for k, v in before.items() if k != "top_kernels"}),
        )
        compile_too = args.compile == "on" and time.perf_counter() - t0 < args.budget_s
        result["variants"] = {"batch": b, "compile_skipped": args.compile == "on" and not compile_too}
        result["variants"] |= variants(
            model,
            batch,
            opt,
            device,
            repeats=args.repeats,
            warmup=args.warmup,
            compile_too=compile_too,
            device_batch=device_batch,
        )
        save()
        log.info("variants: %s", json.dumps(result["variants"]))
    save()
    log.info("wrote %s", args.out)
    return result


if __name__ == "__main__":
    main()
