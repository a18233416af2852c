"""A cost model for a large build and its training, from per-chip figures measured here.

    python -m bench.cost_model                                  # 1 M chips, the recorded figures
    python -m bench.cost_model --chips 250000 --workers 32 --gpus 8 --price-in 0.15 --price-out 0.60
    python -m bench.cost_model --measure                        # re-measure the build figures first

The per-chip figures live in pipelines/cost_inputs.json (package data, shared with `build --dry-run`:
pipelines/estimate.py), each with the command that measured it: the build's worker-seconds per window
and shard bytes per kept chip (`--measure` re-runs a generated scene's build and the demo's to refresh
them, offline: a minute, and once a few minutes more to generate the scene's embeddings), the remote clients' requests and bytes per chip
(`python -m bench.remote_earthengine`, `python -m bench.remote_cog`), LLM tokens per chip
(`python -m bench.remote_llm`: characters / 4, the loopback server's count, an APPROXIMATION of a real
tokenizer) and the trainer's tokens per second (bench/RESULTS.md, one H200, random 7B-sized model).

Every total is a product or a sum of those figures and the arguments (`estimate`); nothing is fitted.
What it does not know: a real service's own latency and quotas, a real tokenizer, the real hardware's
speed (the build figures are of THIS machine's cores), retries.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.estimate import shard_bytes_per_chip

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "pipelines" / "cost_inputs.json"  # package data: `build --dry-run` reads it too


def estimate(
    inputs: dict[str, Any],
    *,
    chips: int,
    workers: int,
    gpus: int,
    price_in: float,
    price_out: float,
    scene_source: str = "earthengine",
    embeddings: str = "cog",
    writer: str = "llm",
    chip_px: int = 256,
) -> dict[str, Any]:
    """Totals for `chips` KEPT chips of `chip_px` pixels a side. Windows laid = chips / kept_fraction
    (rejected windows cost their reads too). Figures measured at another chip size scale with the pixel
    count (build time, shard bytes, scene bytes, COG bytes: each `chip_px` of its block says at which
    size it was measured); anchors per chip do not (16 x 16 whatever the size), and shard bytes are a fixed
    part plus the PNG's (pipelines/estimate.py `shard_bytes_per_chip`). Prices are per million
    tokens. Returns a flat dict of named figures."""
    b, ee, cog, llm, tr = (
        inputs["build"],
        inputs["earthengine"],
        inputs["cog"],
        inputs["llm"],
        inputs["train"],
    )

    def area(block: dict[str, Any]) -> float:
        return (chip_px / block["chip_px"]) ** 2

    windows = chips / b["kept_fraction"]
    worker_h = windows * b["worker_seconds_per_window"] * area(b) / 3600
    out: dict[str, Any] = {
        "chips": chips,
        "windows": round(windows),
        "build_worker_hours": worker_h,
        "build_wall_hours": worker_h / workers,
        "shard_bytes": chips * shard_bytes_per_chip(b, chip_px),
    }
    ee_req = ee_bytes = 0.0
    if scene_source == "earthengine":
        ee_req += windows * ee["scene_requests_per_chip"]
        ee_bytes += windows * ee["scene_bytes_per_chip"] * area(ee)
    if embeddings == "earthengine":
        ee_req += windows * ee["anchor_requests_per_chip"]
        ee_bytes += windows * ee["anchor_bytes_per_chip"]
    out["earthengine_requests"] = ee_req
    out["earthengine_bytes"] = ee_bytes
    out["cog_bytes"] = windows * cog["bytes_per_chip_dense"] * area(cog) if embeddings == "cog" else 0.0
    if writer == "llm":
        # text is written for screened chips only (chips that reach the text stage), i.e. about the kept
        # ones plus those the checker rejects; the kept count is the lower bound used here
        tin, tout = chips * llm["prompt_tokens_per_chip"], chips * llm["completion_tokens_per_chip"]
        out["llm_requests"] = chips * llm["requests_per_chip"]
        out["llm_prompt_tokens"] = tin
        out["llm_completion_tokens"] = tout
        out["llm_cost"] = tin / 1e6 * price_in + tout / 1e6 * price_out
    else:
        out["llm_requests"] = out["llm_prompt_tokens"] = out["llm_completion_tokens"] = 0
        out["llm_cost"] = 0.0
    train_chips = chips * tr["train_fraction"]
    s1_tokens = train_chips * tr["tokens_per_caption_chat"] * tr["stage1_epochs"]
    s2_tokens = train_chips * tr["qa_chats_per_chip"] * tr["tokens_per_qa_chat"] * tr["stage2_epochs"]
    out["stage1_tokens"] = s1_tokens
    out["stage2_tokens"] = s2_tokens
    out["stage1_gpu_hours"] = s1_tokens / tr["tokens_per_s_per_gpu"] / 3600
    out["stage2_gpu_hours"] = s2_tokens / tr["tokens_per_s_per_gpu"] / 3600
    out["train_wall_hours"] = (out["stage1_gpu_hours"] + out["stage2_gpu_hours"]) / gpus
    return out


def _image_bytes(files: list[Path]) -> int:
    """Bytes of the chip PNGs (the `image` column's values) in the shards."""
    return sum(
        len(v["bytes"])
        for f in files
        for v in pq.read_table(f, columns=["image"]).column("image").to_pylist()
    )


def _build(region: Path, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[Path]]:
    from pipelines.executor import build
    from triplet_builder.config import load_region

    cfg = load_region(region, {**overrides, "workers": 1})
    m = build(cfg, progress=False)
    return m, [Path(cfg.output.dir) / f for f in m["files"]]


def measure_build(inputs: dict[str, Any], size: int = 4000, out: Path | None = None) -> dict[str, Any]:
    """Re-measure the build figures, offline, in a temp folder, from two 1-worker builds (`out`: where the
    generated scene and its embeddings are kept, bench/out by default):

    - a generated `size` px scene (bench/build_throughput.py: speckled land, a dark channel, bright
      targets; 10 m) cut into 256 px chips, the default: worker-seconds per window (stage seconds summed,
      over the windows), and the shard bytes of a kept chip that do not grow with the chip (the shard
      files' bytes but the PNGs': the AlphaEarth codes of its 16 x 16 anchors, facts, text, footprint);
    - the bundled demo (real Sentinel-1 tiles): the PNG bytes per pixel of real chips (the generated
      scene's single-look speckle compresses worse than real multi-looked GRD), the kept fraction and
      the QA items per chip.
    """
    from bench.build_throughput import bench_region, generated_inputs

    new = json.loads(json.dumps(inputs))
    scenes, aef = generated_inputs(
        size, 1, *([out] if out else [])
    )  # kept in bench/out, as `make bench` does
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        region = bench_region(f"cost_model_{size}", scenes, aef, 256)
        gen, gen_files = _build(region, {"output.dir": str(t / "generated")})
        demo, demo_files = _build(
            ROOT / "pipelines" / "regions" / "demo.yaml", {"output.dir": str(t / "demo")}
        )
        region.unlink()
        gc, dc = gen["counts"], demo["counts"]
        fixed = (sum(f.stat().st_size for f in gen_files) - _image_bytes(gen_files)) / max(
            1, gc["chips_kept"]
        )
        pixels = sum(
            w * h
            for f in demo_files
            for w, h in zip(*pq.read_table(f, columns=["width", "height"]).to_pydict().values(), strict=True)
        )
        image_per_px = _image_bytes(demo_files) / max(1, pixels)
    stage_s = sum(st["seconds"] for st in gen["stages"].values())
    new["build"] = {
        "worker_seconds_per_window": round(stage_s / gc["windows"], 5),
        "kept_fraction": round(dc["chips_kept"] / dc["windows"], 4),
        "shard_fixed_bytes_per_chip": round(fixed),
        "image_bytes_per_px": round(image_per_px, 4),
        "chip_px": 256,
        "source": "python -m bench.cost_model --measure: worker-seconds per window (stage seconds summed over "
        f"the windows, 1 worker, offline writer) and the shard bytes of a kept chip but its PNG, from a "
        f"generated {size} px scene at 10 m in 256 px chips ({gc['windows']} windows); PNG bytes per pixel, "
        f"kept fraction and QA items per chip from the bundled demo's real Sentinel-1 chips "
        f"({dc['windows']} windows)",
    }
    qa_items = demo["stages"].get("text", {}).get("extra", {}).get("qa_items")
    if qa_items:
        new["train"]["qa_chats_per_chip"] = round(qa_items / max(1, dc["chips_kept"]), 2)
    return new


def _fmt(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.3f}"


def _bytes(v: float) -> str:
    if v <= 0:
        return "0"
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = min(len(units) - 1, int(math.log(v, 1000)))
    return f"{v / 1000**i:,.1f} {units[i]}"


def table(est: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        (f"kept chips ({args.chip_px} px)", _fmt(est["chips"])),
        ("windows read (kept / kept_fraction)", _fmt(est["windows"])),
        ("build worker-hours", _fmt(est["build_worker_hours"])),
        (f"build wall hours on {args.workers} workers", _fmt(est["build_wall_hours"])),
        ("Earth Engine requests", _fmt(round(est["earthengine_requests"]))),
        ("Earth Engine bytes", _bytes(est["earthengine_bytes"])),
        ("COG bytes (AlphaEarth mirror, dense regions)", _bytes(est["cog_bytes"])),
        ("LLM requests", _fmt(est["llm_requests"])),
        (
            "LLM tokens in / out (chars / 4)",
            f"{_fmt(est['llm_prompt_tokens'])} / {_fmt(est['llm_completion_tokens'])}",
        ),
        (f"LLM cost at {args.price_in} / {args.price_out} per M tokens", f"{est['llm_cost']:,.0f}"),
        ("shard bytes", _bytes(est["shard_bytes"])),
        ("stage 1 GPU-hours (captions, 30 epochs)", _fmt(est["stage1_gpu_hours"])),
        ("stage 2 GPU-hours (task QA, 5 epochs)", _fmt(est["stage2_gpu_hours"])),
        (f"training wall hours on {args.gpus} GPUs", _fmt(est["train_wall_hours"])),
    ]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=1_000_000)
    ap.add_argument(
        "--chip-px", type=int, default=256, help="chip side in pixels (the figures scale by area)"
    )
    ap.add_argument("--workers", type=int, default=64, help="build worker processes (one core each)")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--price-in", type=float, default=0.15, help="LLM price per million prompt tokens")
    ap.add_argument("--price-out", type=float, default=0.60, help="LLM price per million completion tokens")
    ap.add_argument("--scenes", choices=["earthengine", "local", "stac"], default="earthengine")
    ap.add_argument("--embeddings", choices=["cog", "earthengine"], default="cog")
    ap.add_argument("--writer", choices=["llm", "offline"], default="llm")
    ap.add_argument("--inputs", type=Path, default=INPUTS)
    ap.add_argument("--measure", action="store_true", help="re-measure the build figures (writes --inputs)")
    ap.add_argument("--json", action="store_true", help="print the estimate as JSON")
    args = ap.parse_args(argv)
    inputs = json.loads(args.inputs.read_text())
    if args.measure:
        inputs = measure_build(inputs)
        args.inputs.write_text(json.dumps(inputs, indent=2) + "\n")
    est = estimate(
        inputs,
        chips=args.chips,
        workers=args.workers,
        gpus=args.gpus,
        price_in=args.price_in,
        price_out=args.price_out,
        scene_source=args.scenes,
        embeddings=args.embeddings,
        writer=args.writer,
        chip_px=args.chip_px,
    )
    print(json.dumps(est, indent=2) if args.json else table(est, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
