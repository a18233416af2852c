"""The executor: the ONLY module that touches Dask.

Plans the run on the driver (scenes, windows inside the region, tasks), runs `run_task` per task on a
dask.distributed LocalCluster (or an existing scheduler), shows a progress bar per stage, skips tasks
finished by an earlier run of the same config, records every failure without stopping the others, and
writes the dataset card and then the manifest, last.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from tqdm.auto import tqdm

from pipelines.stages import TaskFailed, TaskSpec, run_task, task_marker
from schemas import COLUMN_DOCS, SCHEMA_VERSION
from triplet_builder import __version__
from triplet_builder.area import area_polygon
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.geo import scene_geo
from triplet_builder.record import SceneRef, Window
from triplet_builder.sources import SceneFailure, discover_scenes
from triplet_builder.stages.assemble import plugin_summary, stage_names
from triplet_builder.stages.base import Stats
from triplet_builder.text.quality import text_quality
from triplet_builder.tiling import ChipTooLargeError, lay_windows
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card import write_card
from triplet_builder.writers.licences import licence_fields
from triplet_builder.writers.manifest import read_manifest, redact, write_manifest
from triplet_builder.writers.metadata import write_metadata
from triplet_builder.writers.splits import split_report

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """A build that cannot start or produced nothing; the message is one actionable line."""


@dataclass
class Plan:
    scenes: list[SceneRef]
    tasks: list[TaskSpec]
    failures: list[SceneFailure]
    skipped: list[dict[str, str]]
    windows_outside_region: int = 0
    windows_per_scene: dict[str, int] = field(default_factory=dict)
    windows_near_duplicate: int = 0  # flush windows not laid: they would exceed chip.max_overlap


def _window_polygons(scene: SceneRef, windows: list[Window]) -> list[BaseGeometry]:
    geo = scene_geo(scene)
    polys = []
    for w in windows:
        lon, lat = geo.window_outline(w, per_edge=2)
        polys.append(Polygon(np.column_stack([lon, lat])))
    return polys


def plan(cfg: RegionConfig) -> Plan:
    """Find the scenes, keep those in the dates and the area, lay the windows, cut them into tasks."""
    region = area_polygon(cfg.area)
    shapely.prepare(region)
    scenes, failures = discover_scenes(cfg)
    skipped: list[dict[str, str]] = []
    in_dates = []
    for s in scenes:
        if cfg.accepts_date(s.acquired.date()):
            in_dates.append(s)
        else:
            skipped.append(
                {"scene_id": s.scene_id, "reason": "outside_dates", "acquired": s.acquired.isoformat()}
            )
    tasks: list[TaskSpec] = []
    kept: list[SceneRef] = []
    outside = 0
    per_scene: dict[str, int] = {}
    intersecting = 0
    near_duplicate = 0
    for s in in_dates:
        geo = scene_geo(s)
        full = Window(0, 0, s.width, s.height, s.width, s.height)
        lon, lat = geo.window_outline(full, per_edge=16)
        if not Polygon(np.column_stack([lon, lat])).intersects(region):
            skipped.append(
                {"scene_id": s.scene_id, "reason": "outside_region", "acquired": s.acquired.isoformat()}
            )
            continue
        intersecting += 1
        try:
            grid = lay_windows(
                s.width,
                s.height,
                size=cfg.chip.size,
                stride=cfg.chip.step,
                native_pixel_m=s.pixel_size_m,
                target_pixel_m=cfg.chip.pixel_size_m,
                max_overlap=cfg.chip.max_overlap,
            )
        except ChipTooLargeError as e:
            failures.append(
                SceneFailure(s.bands[0].uri, "chip_too_large", f"{s.scene_id}: {e}: lower chip.size")
            )
            continue
        windows = grid.windows
        near_duplicate += grid.near_duplicates
        polys = _window_polygons(s, windows)
        inside = [w for w, p in zip(windows, polys, strict=True) if region.intersects(p)]
        outside += len(windows) - len(inside)
        per_scene[s.scene_id] = len(inside)
        if not inside:
            continue
        kept.append(s)
        for i in range(0, len(inside), cfg.chips_per_task):
            tasks.append(TaskSpec(len(tasks), s, tuple(inside[i : i + cfg.chips_per_task])))
    if in_dates and intersecting == 0 and not failures:
        raise BuildError(
            f"the region area {region.bounds} is outside every scene ({len(in_dates)} in the dates): "
            "check area or scenes.paths"
        )
    return Plan(kept, tasks, failures, skipped, outside, per_scene, near_duplicate)


def preflight(cfg: RegionConfig) -> None:
    """What the workers would only find out task by task: say it once, before any work."""
    llm = cfg.text.llm
    if cfg.text.writer == "llm" and llm is not None:
        if not os.environ.get(llm.api_key_env) and not (llm.base_url or os.environ.get("OPENAI_BASE_URL")):
            raise ConfigError(
                f"text.llm: environment variable {llm.api_key_env} is not set; export your API key there, "
                "or set text.llm.base_url to a local server that needs none"
            )


def _prepare_output(cfg: RegionConfig, overwrite: bool) -> Path:
    out = Path(cfg.output.dir)
    old = read_manifest(out)
    markers = list((out / "_tasks").glob("task-*.json")) if (out / "_tasks").is_dir() else []
    old_hash = old.get("config_hash") if old else None
    if old_hash is None and markers:
        old_hash = json.loads(markers[0].read_text()).get("config_hash")
    if old_hash is not None and old_hash != cfg.config_hash():
        if not overwrite:
            raise BuildError(
                f"output {out} holds a dataset built with another config ({old_hash}); "
                "pass --overwrite to replace it or choose another output.dir"
            )
    if overwrite:
        for sub in ("data", "rejects", "_tasks"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for f in ("manifest.json", "README.md", "metadata.parquet"):
            (out / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _client(cfg: RegionConfig, scheduler: str | None, workers: int | None) -> Any:
    from dask.distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # the scheduler runs in this process: keep its INFO chatter out
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(logging.ERROR)
    address = scheduler or cfg.scheduler
    if address:
        return Client(address, timeout="30s")
    cluster = LocalCluster(
        n_workers=workers or cfg.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,  # task failures are recorded in the manifest and printed once
    )
    return Client(cluster)


def build(
    cfg: RegionConfig,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    region_file: str | None = None,
) -> dict[str, Any]:
    """Build the dataset of a region; returns the manifest (also written to output.dir/manifest.json)."""
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc)
    preflight(cfg)
    out = _prepare_output(cfg, overwrite)
    p = plan(cfg)
    label_counts = None
    if cfg.facts.labels is not None:  # each label once: in a chip, matched outside them, or unmatched
        from triplet_builder.facts.labels import LabelSet

        label_set = LabelSet.from_config(cfg.facts.labels)
        label_counts = label_set.account((t.scene, t.windows) for t in p.tasks)
    todo, done = [], []
    for t in p.tasks:
        m = task_marker(out, t.task_id)
        if m.is_file():
            prev = json.loads(m.read_text())
            if prev.get("config_hash") == cfg.config_hash() and prev.get("scene_id") == t.scene.scene_id:
                done.append(prev)
                continue
        todo.append(t)
    results: list[dict[str, Any]] = list(done)
    task_failures: list[dict[str, Any]] = []
    bars: dict[str, Any] = {}
    total_windows = sum(len(t.windows) for t in p.tasks)
    names = stage_names(cfg.stages, labels=cfg.facts.labels is not None)  # the assembled list
    if progress:
        for i, name in enumerate(names):
            bars[name] = tqdm(
                total=total_windows, desc=f"{name:>12}", unit="chip", position=i, leave=True, file=sys.stderr
            )
    stats = Stats()
    for name in names:
        stats[name]

    def advance(res: dict[str, Any]) -> None:
        st = Stats.from_dict(res["stats"])
        stats.merge(st)
        if bars:
            for name in names:
                total = stats[name]
                bars[name].update(res["windows"])
                bars[name].set_postfix(kept=total.kept, rejected=sum(total.rejected.values()), refresh=False)

    for res in done:
        advance(res)
    if todo:
        client = _client(cfg, scheduler, workers)
        try:
            from dask.distributed import as_completed

            futures = {
                client.submit(
                    run_task, t, cfg, key=f"task-{t.task_id:05d}-{cfg.config_hash()}", pure=False
                ): t
                for t in todo
            }
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # a failed task is recorded; the others go on
                    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                    task_failures.append(
                        {
                            "task_id": t.task_id,
                            "scene_id": t.scene.scene_id,
                            "uri": ", ".join(t.scene.uris),
                            "reason": "task_failed",
                            "message": msg if isinstance(e, TaskFailed) else f"{type(e).__name__}: {msg}",
                        }
                    )
                    continue
                results.append(res)
                advance(res)
        finally:
            client.close()
            cluster = getattr(client, "cluster", None)
            if cluster is not None:
                cluster.close()
    for b in bars.values():
        b.close()
    results.sort(key=lambda r: r["task_id"])
    rows_per_split: Counter[str] = Counter()
    files: list[str] = []
    bytes_written = 0
    for r in results:
        w = r["written"]
        rows_per_split.update(w.get("rows", {}))
        files.extend(w.get("files", []))
        bytes_written += int(w.get("bytes", 0))
    data_files = [f for f in files if f.startswith("data/")]
    rejects_files = [f for f in files if f.startswith("rejects/")]
    rejected: Counter[str] = Counter()
    for st in stats.stages.values():
        rejected.update(st.rejected)
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
        cfg.embeddings.root if cfg.embeddings.type == "cog" else f"earthengine:{cfg.embeddings.collection}"
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
        "config": redact(cfg.model_dump(mode="json")),
        "region_file": region_file,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t_start, 2),
        "python": platform.python_version(),
        "scenes": [
            {
                "scene_id": s.scene_id,
                "uris": list(s.uris),
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
        "failures": [{"uri": f.uri, "reason": f.reason, "message": f.message} for f in p.failures]
        + task_failures,
        "counts": {
            "scenes": len(p.scenes),
            "tasks": len(p.tasks),
            "tasks_reused": len(done),
            "tasks_failed": len(task_failures),
            "windows": total_windows,
            "windows_outside_region": p.windows_outside_region,
            "windows_near_duplicate": p.windows_near_duplicate,
            "chips_kept": sum(rows_per_split.values()),
            "chips_rejected": sum(rejected.values()),
            "rejected_by_reason": dict(sorted(rejected.items())),
            "rows_per_split": dict(sorted(rows_per_split.items())),
            "shards": len(data_files),
            "bytes": bytes_written,
            **({"labels": label_counts} if label_counts is not None else {}),
        },
        "stages": stats.to_dict(),
        "stage_order": list(names),  # the assembled list (the JSON keys of `stages` are sorted)
        "plugins": plugin_summary(cfg.stages, labels=cfg.facts.labels is not None),
        "files": sorted(data_files),
        "rejects_files": sorted(rejects_files),
        "synthetic_embeddings": synthetic,
        "embeddings_source": emb_source if not synthetic else f"SYNTHETIC stand-in at {emb_source}",
        "years": years,
        **licence_fields(cfg, p.scenes, stats.to_dict()),  # licenses (hub ids) + licence_inputs
        "attributions": attributions(cfg, p.scenes, stats.to_dict()),
        "splits": splits,
        "text_quality": text_quality(out, data_files),  # over the kept rows (text/quality.py)
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
        "pretty_name": f"SAR triplets: {cfg.name}",
    }
    manifest["metadata"] = write_metadata(out, manifest["files"])  # the image-free index, from the shards
    write_card(out, manifest, COLUMN_DOCS)
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    return manifest


def summary(manifest: dict[str, Any]) -> str:
    c = manifest["counts"]
    lines = [
        f"dataset {manifest['name']}: {c['scenes']} scene(s), {c['windows']} window(s) in the region, "
        f"{c['chips_kept']} chip(s) kept, {c['chips_rejected']} rejected, {c['shards']} shard(s), "
        f"{manifest['seconds']:.1f} s",
    ]
    if c["rejected_by_reason"]:
        lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in c["rejected_by_reason"].items()))
    if c["rows_per_split"]:
        lines.append("  splits:   " + ", ".join(f"{k} {v}" for k, v in c["rows_per_split"].items()))
    sp = manifest.get("splits") or {}
    if sp:
        lines.append(
            "  blocks:   "
            + ", ".join(f"{k} {v['blocks']}" for k, v in sp["per_split"].items())
            + f"; largest area shared across splits {sp['cross_split']['max_shared_m2']:g} m2"
        )
    lines += [f"  WARNING: {w}" for w in sp.get("warnings", [])]
    for s in manifest["scenes_skipped"]:
        lines.append(f"  skipped {s['scene_id']}: {s['reason'].replace('_', ' ')}")
    if "labels" in c:
        lc = c["labels"]
        lines.append(
            f"  labels:   {lc['in_chips']} in chips, {lc['matched_outside_chips']} matched outside the chips, "
            f"{lc['unmatched']} unmatched (match: {lc['match']})"
        )
    if c["tasks_reused"]:
        lines.append(f"  reused {c['tasks_reused']} finished task(s) from an earlier run")
    if manifest["synthetic_embeddings"]:
        lines.append("  NOTE: aef_* columns hold the demo's SYNTHETIC embeddings, not AlphaEarth")
    return "\n".join(lines)


__all__ = ["BuildError", "ConfigError", "Plan", "build", "plan", "summary"]
