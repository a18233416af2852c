"""The build's last step, on the driver: from what the tasks gave (`Outcome`), the manifest, the
image-free index (metadata.parquet) and the dataset card, written with the manifest LAST (its presence
means the dataset is complete). The executor (pipelines/executor.py) runs the tasks and hands over.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.plan import Plan
from schemas import COLUMN_DOCS, SCHEMA_VERSION
from triplet_builder import __version__, logtally
from triplet_builder.area import area_polygon
from triplet_builder.config import RegionConfig
from triplet_builder.portable import portable_config, portable_uri, scrub_paths
from triplet_builder.stages.assemble import plugin_summary
from triplet_builder.stages.base import Stats
from triplet_builder.text.quality import text_quality
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card import write_card
from triplet_builder.writers.licences import licence_fields
from triplet_builder.writers.manifest import redact, write_manifest
from triplet_builder.writers.metadata import write_metadata
from triplet_builder.writers.splits import split_report


@dataclass
class Outcome:
    """What running a plan's tasks gave, and how the run went: what the manifest is made of."""

    results: list[dict[str, Any]]  # each finished task's result, the reused ones included
    failed_written: list[dict[str, Any]]  # what a failed task's rejects wrote
    failed_windows: int
    task_failures: list[dict[str, Any]]
    stats: Stats  # every stage's counts, summed over the tasks
    names: list[str]  # the assembled stage list
    reused: int  # tasks an earlier run finished
    rerun: dict[str, int]  # why finished tasks ran again
    removed: int  # task files of an earlier run that the plan does not make
    label_counts: dict[str, Any] | None
    warnings: list[list[dict[str, Any]]]  # the workers' warning tallies
    checked: dict[str, dict[str, int] | None]  # the re-checker's counts by shard
    limit: int | None  # `build --limit N`
    windows_planned: int  # before --limit


def finish(
    cfg: RegionConfig,
    out: Path,
    p: Plan,
    o: Outcome,
    region_file: str | None,
    t_start: float,
    started: datetime,
) -> dict[str, Any]:
    """Write the index, the card and then the manifest of a finished run; returns the manifest."""
    o.results.sort(key=lambda r: r["task_id"])
    rows_per_split: Counter[str] = Counter()
    files: list[str] = []
    bytes_written = 0
    for w in [r["written"] for r in o.results] + o.failed_written:
        rows_per_split.update(w.get("rows", {}))
        files.extend(w.get("files", []))
        bytes_written += int(w.get("bytes", 0))
    data_files = [f for f in files if f.startswith("data/")]
    rejects_files = [f for f in files if f.startswith("rejects/")]
    rejected: Counter[str] = Counter()
    for st in o.stats.stages.values():
        rejected.update(st.rejected)
    if o.failed_windows:
        rejected["task_failed"] += o.failed_windows
    years = sorted({s.year for s in p.scenes})
    splits = split_report(
        out,
        data_files,
        block_km=cfg.split.block_km,
        min_blocks=cfg.split.min_blocks,
        split_guard_rejects=rejected.get("split_guard", 0),
        expected=[s for s, share in cfg.split.shares.items() if share > 0],
        max_overlap=cfg.chip.max_overlap,
        near_duplicates=p.windows_near_duplicate,
        chip_km=max(
            (cfg.chip.size * (cfg.chip.pixel_size_m or s.pixel_size_m) / 1000 for s in p.scenes), default=None
        ),
    )
    synthetic = cfg.embeddings.synthetic
    emb_source = (
        portable_uri(cfg.embeddings.root or "")
        if cfg.embeddings.type == "cog"
        else f"earthengine:{cfg.embeddings.collection}"
    )
    scene_source = {
        "local": "local files",
        "earthengine": f"Earth Engine {getattr(cfg.scenes, 'collection', '')}",
        "stac": f"STAC {getattr(cfg.scenes, 'url', '')} {getattr(cfg.scenes, 'collection', '')}",
    }[cfg.scenes.type]
    manifest: dict[str, Any] = {
        "name": cfg.name,
        "description": cfg.description,
        "pipeline_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "config_hash": cfg.config_hash(),
        "config": portable_config(redact(cfg.model_dump(mode="json"))),  # no folder of this machine
        "region_file": Path(region_file).name if region_file else None,
        "started": started.isoformat(timespec="seconds"),
        "limit": o.limit,  # `build --limit N`: only the plan's first N windows (null: the full plan)
        "seconds": round(time.perf_counter() - t_start, 2),
        "python": platform.python_version(),
        "scenes": [
            {
                "scene_id": s.scene_id,
                "uris": [portable_uri(u) for u in s.uris],
                "acquired": s.acquired.isoformat(),
                "sensor": s.sensor,
                "polarisations": list(s.polarisations),
                "scale": s.scale.value,
                "scale_source": s.scale_source,
                "backscatter": s.backscatter.value,
                "backscatter_source": s.backscatter_source,
                "georef": s.georef.value,
                "pixel_size_m": s.pixel_size_m,
                "windows": p.windows_per_scene.get(s.scene_id, 0),
            }
            for s in p.scenes
        ],
        "scenes_skipped": p.skipped,
        "failures": [
            {"uri": portable_uri(f.uri), "reason": f.reason, "message": scrub_paths(f.message)}
            for f in p.failures
        ]
        + o.task_failures,
        "counts": {
            "scenes": len(p.scenes),
            "tasks": len(p.tasks),
            "tasks_reused": o.reused,
            "tasks_rerun": dict(sorted(o.rerun.items())),  # why finished tasks ran again
            "tasks_failed": len(o.task_failures),
            "files_removed": o.removed,  # task files of an earlier run that the plan does not make
            "windows": sum(len(t.windows) for t in p.tasks),
            "windows_planned": o.windows_planned,  # before --limit
            "windows_outside_region": p.windows_outside_region,
            "windows_near_duplicate": p.windows_near_duplicate,
            "chips_kept": sum(rows_per_split.values()),
            "chips_rejected": sum(rejected.values()),
            "rejected_by_reason": dict(sorted(rejected.items())),
            "rows_per_split": dict(sorted(rows_per_split.items())),
            "shards": len(data_files),
            "bytes": bytes_written,
            **({"labels": o.label_counts} if o.label_counts is not None else {}),
        },
        "stages": o.stats.to_dict(),
        "stage_order": list(o.names),  # the assembled list (the JSON keys of `stages` are sorted)
        "plugins": plugin_summary(cfg.stages, labels=cfg.facts.labels is not None),
        "files": sorted(data_files),
        "rejects_files": sorted(rejects_files),
        "synthetic_embeddings": synthetic,
        "embeddings_source": emb_source if not synthetic else f"SYNTHETIC stand-in at {emb_source}",
        "years": years,
        **licence_fields(cfg, p.scenes, o.stats.to_dict()),  # licenses (hub ids) + licence_inputs
        "attributions": attributions(cfg, p.scenes, o.stats.to_dict()),
        "splits": splits,
        "text_quality": text_quality(out, data_files, o.checked),  # over the kept rows (text/quality.py)
        # what the dataset card reads
        "rows": dict(sorted(rows_per_split.items())),
        "rejects": sum(rejected.values()),
        "region": {"name": cfg.name, "bbox": list(area_polygon(cfg.area).bounds)},
        "sources": [
            f"SAR scenes: {', '.join(sorted({s.sensor for s in p.scenes})) or 'none'} "
            f"({len(p.scenes)} scene(s), {scene_source})",
            "Backscatter convention: "
            + (
                "; ".join(
                    f"{bs} ({src}) for {n} scene(s)"
                    for (bs, src), n in sorted(
                        Counter((s.backscatter.value, s.backscatter_source) for s in p.scenes).items()
                    )
                )
                or "none"
            ),
            f"Embeddings: {'SYNTHETIC stand-in (not AlphaEarth)' if synthetic else 'AlphaEarth Satellite Embedding V1'}"
            f" via {cfg.embeddings.type} provider",
            "Text: offline deterministic writer"
            if cfg.text.writer == "offline" or cfg.text.llm is None
            else f"Text: LLM {cfg.text.llm.model} through an OpenAI-compatible API, checked against the fact sheets",
        ],
        "stretch": cfg.output.stretch.model_dump(mode="json"),
        "warnings": [
            {k: t[k] for k in ("logger", "level", "count", "first")} for t in logtally.merge(o.warnings)
        ],
        "pretty_name": f"SAR triplets: {cfg.name}",
    }
    manifest["metadata"] = write_metadata(out, manifest["files"])  # the image-free index, from the shards
    write_card(out, manifest, COLUMN_DOCS)
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    return manifest


__all__ = ["Outcome", "finish"]
