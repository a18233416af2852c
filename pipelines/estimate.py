"""What a build will ask of each service and write, from its plan alone: `triplet-builder build --dry-run`.

The per-chip figures are the ones `python -m bench.cost_model` uses, measured here and recorded with the
command that measured each in `pipelines/cost_inputs.json` (package data; bench/cost_model.py reads and
`--measure` rewrites the same file). What the plan knows exactly: scenes, windows, tasks, batches. What it
cannot know before the pixels are read: how many windows are kept (nodata, featureless, split guard ...),
so every chip figure is an UPPER bound ("up to": every window kept), and a figure taken from a
measurement says "about". Figures measured at another chip size scale with the pixel count (Earth Engine
scene bytes, COG bytes); request counts per chip do not; a chip's shard bytes are a part that does not
grow with the chip (its AlphaEarth codes, facts, text, footprint) plus its PNG, which does
(`shard_bytes_per_chip`).

LLM tokens are characters / 4 at the loopback server (an approximation of a real tokenizer); prices are
per million tokens and default to 0 (`--price-in`, `--price-out`).
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

from pipelines.plan import Plan
from triplet_builder.config import RegionConfig
from triplet_builder.stages.assemble import assemble

INPUTS_FILE = "cost_inputs.json"


@cache
def cost_inputs() -> dict[str, Any]:
    """The recorded per-chip figures (pipelines/cost_inputs.json)."""
    return json.loads(resources.files("pipelines").joinpath(INPUTS_FILE).read_text(encoding="utf-8"))


def shard_bytes_per_chip(build: dict[str, Any], chip_px: int) -> float:
    """Bytes a kept chip of `chip_px` a side adds to the shards: the part that does not grow with the chip
    (the codes of its 16 x 16 AlphaEarth anchors, facts, text, footprint: `shard_fixed_bytes_per_chip`) and
    its PNG (`image_bytes_per_px` of real Sentinel-1 chips, times the pixel count)."""
    return float(build["shard_fixed_bytes_per_chip"] + build["image_bytes_per_px"] * chip_px * chip_px)


def _area(block: dict[str, Any], chip_px: int) -> float:
    return (chip_px / block["chip_px"]) ** 2


def _batches(p: Plan, batch: int) -> int:
    """Batches a batch stage forms over the plan's tasks (each task batches its own windows)."""
    return sum(math.ceil(len(t.windows) / batch) for t in p.tasks)


def estimate(cfg: RegionConfig, p: Plan, *, price_in: float = 0.0, price_out: float = 0.0) -> dict[str, Any]:
    """The dry run's figures for plan `p` of region `cfg`: a flat dict (upper bounds where chips count)."""
    inputs = cost_inputs()
    b, ee, cog, llm = inputs["build"], inputs["earthengine"], inputs["cog"], inputs["llm"]
    windows = sum(len(t.windows) for t in p.tasks)
    chip_px = cfg.chip.size
    out: dict[str, Any] = {
        "scenes": len(p.scenes),
        "scenes_skipped": len(p.skipped),
        "windows": windows,
        "tasks": len(p.tasks),
        "chips_max": windows,
        "shard_bytes_max": windows * shard_bytes_per_chip(b, chip_px),
    }
    ee_scene = windows * ee["scene_requests_per_chip"] if cfg.scenes.type == "earthengine" else 0
    ee_anchor = windows * ee["anchor_requests_per_chip"] if cfg.embeddings.type == "earthengine" else 0
    out["ee_scene_requests"] = math.ceil(ee_scene)
    out["ee_scene_bytes"] = ee_scene and windows * ee["scene_bytes_per_chip"] * _area(ee, chip_px)
    out["ee_anchor_requests"] = math.ceil(ee_anchor)
    out["ee_anchor_bytes"] = ee_anchor and windows * ee["anchor_bytes_per_chip"]
    out["scene_cog_windows"] = windows if cfg.scenes.type == "stac" else 0
    out["aef_cog_bytes"] = (
        windows * cog["bytes_per_chip_dense"] * _area(cog, chip_px) if cfg.embeddings.type == "cog" else 0
    )
    out["aef_cog_remote"] = cfg.embeddings.type == "cog" and "://" in str(cfg.embeddings.root or "")
    llm_on = cfg.text.writer == "llm" and cfg.text.llm is not None
    out["llm_requests_max"] = math.ceil(windows * llm["requests_per_chip"]) if llm_on else 0
    out["llm_prompt_tokens_max"] = math.ceil(windows * llm["prompt_tokens_per_chip"]) if llm_on else 0
    out["llm_completion_tokens_max"] = math.ceil(windows * llm["completion_tokens_per_chip"]) if llm_on else 0
    out["llm_cost_max"] = (
        out["llm_prompt_tokens_max"] / 1e6 * price_in + out["llm_completion_tokens_max"] / 1e6 * price_out
    )
    out["price_in"], out["price_out"] = price_in, price_out
    out["osm_queries_max"] = out["land_cover_batches_max"] = 0
    for st in assemble(cfg.stages, labels=cfg.facts.labels is not None):
        if st.entry is None:
            continue
        conf = cfg.stages[st.entry].config or {}
        batches = _batches(p, int(getattr(st.cls, "batch", 64)))
        if st.name == "osm" and conf.get("source", "overpass") == "overpass":
            out["osm_queries_max"] += batches
        elif st.name == "land_cover" and conf.get("source", "cog") != "local":
            out["land_cover_batches_max"] += batches
    return out


def _bytes(v: float) -> str:
    if v <= 0:
        return "0 B"
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = min(len(units) - 1, int(math.log(v, 1000)))
    return f"{v / 1000**i:,.1f} {units[i]}"


def report(est: dict[str, Any], cfg: RegionConfig) -> list[str]:
    """The dry run's lines, as `build --dry-run` prints them."""
    n = est["windows"]
    lines = [
        f"dry run of {cfg.name}: nothing read but the plan, nothing written",
        f"  scenes:    {est['scenes']}"
        + (f" ({est['scenes_skipped']} skipped)" if est["scenes_skipped"] else ""),
        f"  windows:   {n:,} in {est['tasks']} task(s)",
        f"  chips:     up to {est['chips_max']:,} (how many are kept is known only after reading them)",
        "  requests:",
    ]
    if cfg.scenes.type == "earthengine":
        lines.append(
            f"    Earth Engine computePixels, scenes: {est['ee_scene_requests']:,} (one per window), "
            f"about {_bytes(est['ee_scene_bytes'])}"
        )
    if cfg.embeddings.type == "earthengine":
        lines.append(
            f"    Earth Engine computePixels, anchors: about {est['ee_anchor_requests']:,}, "
            f"about {_bytes(est['ee_anchor_bytes'])}"
        )
    if cfg.scenes.type == "stac":
        lines.append(f"    scene COG reads: {n:,} window(s) (HTTP range reads of the assets)")
    if cfg.embeddings.type == "cog":
        where = "remote" if est["aef_cog_remote"] else "local"
        lines.append(
            f"    AlphaEarth COG reads ({where}): about {_bytes(est['aef_cog_bytes'])} (chips tiling densely)"
        )
    if cfg.text.writer == "llm" and cfg.text.llm is not None:
        lines.append(
            f"    LLM {cfg.text.llm.model}: up to {est['llm_requests_max']:,} requests (2 per chip that "
            "reaches the text stage; repairs and retries not counted)"
        )
        lines.append(
            f"    LLM tokens: up to {est['llm_prompt_tokens_max']:,} in / {est['llm_completion_tokens_max']:,} "
            f"out (about; characters / 4); cost up to {est['llm_cost_max']:,.2f} at {est['price_in']:g} / "
            f"{est['price_out']:g} per million tokens"
        )
    else:
        lines.append("    LLM: none (offline writer)")
    if est["osm_queries_max"]:
        lines.append(f"    OpenStreetMap Overpass: up to {est['osm_queries_max']:,} queries (one per batch)")
    if est["land_cover_batches_max"]:
        lines.append(
            f"    land cover: up to {est['land_cover_batches_max']:,} batch reads (one per batch and map year)"
        )
    ee_total = est["ee_scene_requests"] + est["ee_anchor_requests"]
    if ee_total:
        lines.append(
            f"    Earth Engine in all: about {ee_total:,} computePixels requests (besides the scene search "
            "this plan made)"
        )
    lines.append(
        f"  to write:  up to {_bytes(est['shard_bytes_max'])} of shards (about; {cfg.chip.size} px chips)"
    )
    return lines


__all__ = ["cost_inputs", "estimate", "report", "shard_bytes_per_chip"]
