"""Benchmark: what the TLM costs a FUSAR-GPT training step, against the same step without it.

Tiny (default, CPU): the tiny Qwen2.5-VL of model/base.py with LoRA, 504 x 504 chips (the paper's 324
visual tokens each) and a 10 x 10 anchor grid, forward + backward with the TLM against the identical model
with tlm=None on the same batch, interleaved repeats; the ratio of medians is the overhead (aim: < 5 %).
Also with the TLM frozen (stage 2: it runs, but computes no weight gradients). The tiny base is ~0.2 M
parameters, so this is a worst case: at 7B size the TLM is ~0.2 % of a step's FLOPs (see --dry-run).
Timings on a shared machine are noisy: use --threads 1 and many repeats; "min_s" is the least disturbed.

Real (--real, needs a CUDA GPU): a randomly initialised model of Qwen2.5-VL-7B's size (its config written
here, nothing downloaded), bf16, LoRA r 8 on the LLM, and a full training step (forward + backward + AdamW)
for stage 1 (LoRA + TLM trained), stage 2 (LoRA only, TLM frozen) and the TLM bypassed
(`FusarGPT.bypass_tlm`: the same model and batch minus the TLM's work): step time, peak memory and tokens/s. `--real --dry-run`
builds it on the meta device and reports parameter counts and FLOPs without a GPU.

    python -m bench.train_tlm_overhead                       # tiny, CPU -> bench/out/tlm_overhead.json
    python -m bench.train_tlm_overhead --real --seq-len 1024 # 7B-sized, GPU -> bench/out/tlm_overhead_real.json
    python -m bench.train_tlm_overhead --real --dry-run      # sizes and FLOPs only
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from model.base import build_tiny_base, build_tiny_tokenizer, hidden_size
from model.efficiency import lora_in_autocast, set_checkpointing
from model.host_index import host_index
from model.host_index import to_device as host_to_device
from model.lora import apply_lora, parameter_groups
from model.tlm import TLM, FusarGPT, TLMConfig
from model.vision_windows import use_windows_attention

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
log = logging.getLogger("bench.train_tlm_overhead")


# ---- inputs ---------------------------------------------------------------------------------------------


def make_inputs(processor: Any, *, batch: int, image: int, seq_len: int, anchors: int, seed: int = 0) -> dict:
    """A collated batch: `batch` chats of one image + a caption padded out to about seq_len tokens.

    Anchors: an anchors x anchors regular grid (as the release lays them) with random 64-d vectors.
    """
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (image, image, 3), dtype=np.uint8)) for _ in range(batch)]
    n_visual = (image // 28) ** 2
    words = "the harbour has two long piers and several ships moored along the eastern quay "
    filler = (words * (seq_len // len(words) + 1))[: max(seq_len - n_visual - 40, 8)]
    chats = [
        [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]},
            {"role": "assistant", "content": [{"type": "text", "text": filler}]},
        ]
        for _ in range(batch)
    ]
    texts = [processor.apply_chat_template(c, tokenize=False) for c in chats]
    inputs = dict(processor(text=texts, images=images, return_tensors="pt", padding=True))
    inputs["labels"] = inputs["input_ids"].clone()
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(
        (torch.arange(anchors) + 0.5) / anchors, (torch.arange(anchors) + 0.5) / anchors, indexing="ij"
    )
    pos = torch.stack([ys.flatten(), xs.flatten()], -1)  # (S, 2)
    inputs["aef_positions"] = pos[None].repeat(batch, 1, 1)
    inputs["aef_features"] = torch.randn(batch, anchors * anchors, 64, generator=g) * 0.1
    inputs["aef_mask"] = torch.ones(batch, anchors * anchors, dtype=torch.bool)
    return inputs


def to_device(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    """The batch on `device` as the trainer copies it (model/host_index.py: host-side index tensors stay),
    pixel_values cast to the bf16 model's dtype."""
    return host_to_device(inputs, device, pixel_dtype=dtype)


# ---- timing -----------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: FusarGPT, inputs: dict, optimizer: torch.optim.Optimizer | None) -> float:
    """One step: forward (under bf16 autocast on a GPU, as the trainer runs it), backward (and the optimizer
    when given); returns the loss."""
    device = inputs["input_ids"].device
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = model(**inputs).loss
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    for p in model.parameters():
        p.grad = None
    return float(loss.detach())


def interleaved(
    steps: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each named step, measured in alternating order so drift hits all of them alike."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "mean_s": statistics.fmean(seconds),
        "stdev_s": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
    }


# ---- tiny, CPU -------------------------------------------------------------------------------------------


def run_tiny(args: argparse.Namespace) -> dict[str, Any]:
    """Forward + backward with the TLM against tlm=None, same weights, same batch."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    base_on, processor = build_tiny_base(seed=0)
    base_off, _ = build_tiny_base(seed=0)
    torch.manual_seed(0)
    with_tlm = apply_lora(FusarGPT(base_on, TLM(TLMConfig(sigma=args.sigma), hidden_size(base_on))))
    without = apply_lora(FusarGPT(base_off, None))
    for m in (with_tlm, without):
        m.train()
    inputs = make_inputs(
        processor, batch=args.batch, image=args.image, seq_len=args.seq_len, anchors=args.anchors
    )
    assert with_tlm.tlm is not None
    tlm_params = list(with_tlm.tlm.parameters())

    def tlm_step(trains: bool) -> Callable[[], float]:
        def fn() -> float:
            for p in tlm_params:
                p.requires_grad_(trains)
            return train_step(with_tlm, inputs, None)

        return fn

    steps = {
        "tlm": tlm_step(True),  # stage 1: the TLM trains
        "tlm_frozen": tlm_step(False),  # stage 2: the TLM runs but no gradient flows into it
        "no_tlm": lambda: train_step(without, inputs, None),
    }
    times = interleaved(steps, args.repeats, args.warmup, device)
    frozen_ratio = statistics.median(times["tlm_frozen"]) / statistics.median(times["no_tlm"])
    pair_ratios = [a / b for a, b in zip(times["tlm"], times["no_tlm"], strict=True)]
    min_ratio = min(times["tlm"]) / min(times["no_tlm"])
    ratio = statistics.median(times["tlm"]) / statistics.median(times["no_tlm"])
    return {
        "mode": "tiny",
        "what": "forward + backward, LoRA on all, TLM trainable / TLM frozen vs tlm=None",
        "batch": args.batch,
        "image_px": args.image,
        "visual_tokens_per_image": (args.image // 28) ** 2,
        "anchors_per_image": args.anchors**2,
        "tokens_per_step": int(inputs["input_ids"].numel()),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "tlm": summary(times["tlm"]),
        "tlm_frozen": summary(times["tlm_frozen"]),
        "no_tlm": summary(times["no_tlm"]),
        "ratio_of_medians": ratio,
        "overhead_pct": 100 * (ratio - 1),
        "overhead_pct_tlm_frozen": 100 * (frozen_ratio - 1),
        "median_pair_ratio": statistics.median(pair_ratios),
        "overhead_pct_of_min": 100 * (min_ratio - 1),
        "tlm_params": sum(p.numel() for p in with_tlm.tlm.parameters()) if with_tlm.tlm else 0,
        "base_params": sum(p.numel() for p in without.parameters()),
        "target_overhead_pct": 5.0,
    }


# ---- real size (Qwen2.5-VL-7B), GPU ---------------------------------------------------------------------


def qwen2_5_vl_7b_config(*, layers: int = 28, vision_depth: int = 32) -> Any:
    """Qwen2.5-VL-7B-Instruct's architecture, written out (values of its config.json); no download.

    The special-token ids are those of our tiny tokenizer, so its processor builds the inputs; the
    vocabulary keeps the real 152,064 rows, so embedding and LM-head costs are the real ones.
    """
    from transformers import Qwen2_5_VLConfig

    tok = build_tiny_tokenizer()
    names = (
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    ids = {t: int(cast(int, tok.convert_tokens_to_ids(t))) for t in names}
    cfg = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": layers,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [16, 24, 24],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < vision_depth],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    return cfg


def build_real(args: argparse.Namespace, device: torch.device) -> FusarGPT:
    """The 7B-sized FusarGPT (LoRA + TLM) with random weights, base in bf16, TLM in float32, set up as the
    trainer sets it up (model/efficiency.py; train_step runs it under bf16 autocast on a GPU)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = qwen2_5_vl_7b_config(layers=args.layers, vision_depth=args.vision_depth)
    with device:  # random init straight on the GPU (or the meta device), in bf16
        base = Qwen2_5_VLForConditionalGeneration._from_config(
            cfg, dtype=torch.bfloat16, attn_implementation=args.attn
        )
    with device:
        tlm = TLM(TLMConfig(sigma=args.sigma), hidden_size(base))  # float32: it is trained
    model = apply_lora(FusarGPT(base, tlm))
    if args.grad_ckpt and device.type != "meta":
        set_checkpointing(model, True)
    if device.type == "cuda":
        lora_in_autocast(model)
    use_windows_attention(model)  # as model.train.run does (sdpa only)
    return model


def count(model: FusarGPT) -> dict[str, int]:
    groups = parameter_groups(model)
    params = dict(model.named_parameters())
    return {k: sum(params[n].numel() for n in names) for k, names in groups.items()}


def flops(
    counts: dict[str, int], tokens: int, anchors: int, images: int, trains_tlm: bool
) -> dict[str, float]:
    """Rough matmul FLOPs of a step: frozen base 4 N T (forward + input grads), LoRA 6 N T, TLM MLP 6 N S."""
    base = 4.0 * counts["base"] * tokens
    lora = 6.0 * counts["lora"] * tokens
    tlm = (6.0 if trains_tlm else 4.0) * counts["tlm"] * anchors * images
    return {"base": base, "lora": lora, "tlm": tlm, "tlm_share_pct": 100 * tlm / (base + lora + tlm)}


def run_real(args: argparse.Namespace) -> dict[str, Any]:
    """Stage 1 / stage 2 / TLM bypassed training steps of the 7B-sized model on one GPU."""
    _, processor = build_tiny_base(seed=0)  # its tokenizer ids match qwen2_5_vl_7b_config
    inputs = make_inputs(
        processor, batch=args.batch, image=args.image, seq_len=args.seq_len, anchors=args.anchors
    )
    tokens = int(inputs["attention_mask"].sum())
    if args.dry_run:
        model = build_real(args, torch.device("meta"))
        counts = count(model)
        return {
            "mode": "real-dry-run",
            "params": counts | {"total": sum(counts.values())},
            "tokens_per_step": tokens,
            "flops_stage1": flops(counts, tokens, args.anchors**2, args.batch, True),
        }
    if not torch.cuda.is_available():
        raise SystemExit("--real needs a CUDA GPU (or add --dry-run for sizes and FLOPs only)")
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_real(args, device)
    model.train()
    counts = count(model)
    batch = to_device(host_index(model, inputs), device, torch.bfloat16)
    assert model.tlm is not None
    tlm_params = list(model.tlm.parameters())
    lora_params = [p for n, p in model.named_parameters() if ".lora_" in n]
    opt = torch.optim.AdamW(lora_params + tlm_params, lr=1e-4)

    def stage(tlm_trains: bool, bypass: bool = False) -> Callable[[], float]:
        def fn() -> float:
            for p in tlm_params:
                p.requires_grad_(tlm_trains)
            model.bypass_tlm = bypass  # a host flag: the hook returns the tokens untouched
            try:
                return train_step(model, batch, opt)
            finally:
                model.bypass_tlm = False

        return fn

    steps = {"stage1": stage(True), "stage2": stage(False), "tlm_bypassed": stage(False, bypass=True)}
    results: dict[str, Any] = {}
    for name, fn in steps.items():  # peak memory per mode, each from a clean counter
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        results[name] = {"peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    times = interleaved(steps, args.repeats, args.warmup, device)
    for name in steps:
        s = summary(times[name])
        results[name] |= s | {"tokens_per_s": tokens / s["median_s"]}
    base_t = statistics.median(times["tlm_bypassed"])
    return {
        "mode": "real",
        "what": "full step (forward + backward + AdamW), bf16 base, float32 TLM, LoRA r 8 on the LLM",
        "device": torch.cuda.get_device_name(device),
        "layers": args.layers,
        "vision_depth": args.vision_depth,
        "attn": args.attn,
        "grad_ckpt": args.grad_ckpt,
        "batch": args.batch,
        "tokens_per_step": tokens,
        "anchors_per_image": args.anchors**2,
        "params": counts | {"total": sum(counts.values())},
        **results,
        "overhead_pct_stage1": 100 * (statistics.median(times["stage1"]) / base_t - 1),
        "overhead_pct_stage2": 100 * (statistics.median(times["stage2"]) / base_t - 1),
        "flops_stage1": flops(counts, tokens, args.anchors**2, args.batch, True),
    }


# ---- CLI ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--real", action="store_true", help="Qwen2.5-VL-7B-sized random model on a CUDA GPU")
    p.add_argument("--dry-run", action="store_true", help="with --real: sizes and FLOPs on the meta device")
    p.add_argument("--batch", type=int, default=2, help="images (chats) per step")
    p.add_argument("--image", type=int, default=504, help="square image size in px (a multiple of 28)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per chat (default: 512 tiny, 1024 real)")
    p.add_argument("--anchors", type=int, default=10, help="anchors per image side (a regular grid)")
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument(
        "--repeats", type=int, default=None, help="timed steps per mode (default: 20 tiny, 10 real)"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--layers", type=int, default=28, help="--real: LLM decoder layers")
    p.add_argument("--vision-depth", type=int, default=32, help="--real: ViT blocks")
    p.add_argument(
        "--attn", default="sdpa", help="--real: attention implementation (sdpa, flash_attention_2)"
    )
    p.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument(
        "--out", type=Path, default=None, help="JSON output (default: bench/out/tlm_overhead*.json)"
    )
    args = p.parse_args(argv)
    if args.image % 28:
        p.error(f"--image {args.image} is not a multiple of 28 (patch 14 x merge 2)")
    args.seq_len = args.seq_len or (1024 if args.real else 512)
    args.repeats = args.repeats or (10 if args.real else 20)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    result = run_real(args) if args.real else run_tiny(args)
    result |= {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    out = args.out or OUT / ("tlm_overhead_real.json" if args.real else "tlm_overhead.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s", json.dumps(result, indent=2))
    log.info("wrote %s", out)
    return result


if __name__ == "__main__":
    main()
