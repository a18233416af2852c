"""The executor: the ONLY module that touches Dask.

Plans the run on the driver (scenes, windows inside the region, tasks), runs `run_task` per task on a
dask.distributed LocalCluster (or an existing scheduler), shows a progress bar per stage, skips tasks
finished by an earlier run of the same config, records every failure without stopping the others, and
writes the dataset card and then the manifest, last.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipelines.output import build_lock, check_output, claim_output
from pipelines.plan import BuildError, Plan, plan, preflight
from pipelines.resume import remove_unclaimed, resume_state
from pipelines.stages import TaskFailed, reject_task, run_task
from schemas import COLUMN_DOCS, SCHEMA_VERSION
from triplet_builder import __version__, logtally
from triplet_builder.area import area_polygon
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.portable import portable_config, portable_uri, scrub_paths
from triplet_builder.stages.assemble import plugin_summary, stage_names
from triplet_builder.stages.base import Stats
from triplet_builder.text.quality import text_quality
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card import write_card
from triplet_builder.writers.licences import licence_fields
from triplet_builder.writers.manifest import redact, write_manifest
from triplet_builder.writers.metadata import write_metadata
from triplet_builder.writers.splits import split_report

log = logging.getLogger(__name__)


def _collect_warnings(client: Any) -> list[list[dict[str, Any]]]:
    """The warning tallies of the workers still alive (a lost worker's tally is lost with it)."""
    try:
        per_worker = client.run(logtally.drain)
    except Exception:  # a worker lost at the very end: its counts only, never the build
        return []
    return list(per_worker.values())


def _client(cfg: RegionConfig, scheduler: str | None, workers: int | None, tasks: int) -> Any:
    """A client of the scheduler named (CLI --scheduler, then the region's `dask.scheduler`), else of a
    LocalCluster of at most `workers` processes (never more than the tasks to run)."""
    from dask.distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # the scheduler runs in this process: keep its INFO chatter out
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(logging.ERROR)
    address = scheduler or cfg.scheduler
    if address:
        client = Client(address, timeout="30s")
    else:
        n = min(workers or cfg.workers, max(tasks, 1))
        if n < 1:
            raise BuildError(f"--workers {n}: use 1 or more worker processes")
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # task failures are recorded in the manifest and printed once
        )
        client = Client(cluster)
    if not log.isEnabledFor(logging.DEBUG):
        from distributed.diagnostics.plugin import WorkerPlugin

        class TallyWarnings(WorkerPlugin):
            """Each worker counts its warnings by kind (triplet_builder.logtally) instead of printing a
            line per retry; the driver collects the counts at the end (`_collect_warnings`)."""

            def setup(self, worker: Any) -> None:
                logtally.install()

        client.register_plugin(TallyWarnings(), name="sar-triplets-warning-tally")
    return client


def build(
    cfg: RegionConfig,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    region_file: str | None = None,
) -> dict[str, Any]:
    """Build the dataset of a region; returns the manifest (also written to output.dir/manifest.json).

    Holds the output folder's lock throughout (pipelines/output.py); reuses the tasks an earlier run
    finished with the same key and intact files, and removes every task file the plan does not make
    (pipelines/resume.py)."""
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc)
    preflight(cfg)
    out = check_output(cfg, overwrite)
    with build_lock(out):
        claim_output(out, cfg, overwrite)
        p = plan(cfg)
        return _build(cfg, out, p, scheduler, workers, progress, region_file, t_start, started)


def _build(
    cfg: RegionConfig,
    out: Path,
    p: Plan,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    region_file: str | None,
    t_start: float,
    started: datetime,
) -> dict[str, Any]:
    label_counts = None
    if cfg.facts.labels is not None:  # each label once: in a chip, matched outside them, or unmatched
        from triplet_builder.facts.labels import LabelSet

        label_set = LabelSet.from_config(cfg.facts.labels)
        label_counts = label_set.account((t.scene, t.windows) for t in p.tasks)
    state = resume_state(out, p.tasks)
    removed = remove_unclaimed(out, state.done)
    todo, done = state.todo, state.done
    results: list[dict[str, Any]] = list(done)
    task_failures: list[dict[str, Any]] = []
    failed_written: list[dict[str, Any]] = []
    failed_windows = 0
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
    warnings: list[list[dict[str, Any]]] = []
    if todo:
        client = _client(cfg, scheduler, workers, len(todo))
        try:
            from dask.distributed import as_completed

            futures = {
                client.submit(run_task, t, cfg, key=f"task-{t.task_id:05d}-{t.key}", pure=False): t
                for t in todo
            }
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # a failed task is recorded; the others go on
                    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                    msg = msg if isinstance(e, TaskFailed) else f"{type(e).__name__}: {msg}"
                    task_failures.append(
                        {
                            "task_id": t.task_id,
                            "scene_id": t.scene.scene_id,
                            "uri": ", ".join(portable_uri(u) for u in t.scene.uris),
                            "reason": "task_failed",
                            "message": scrub_paths(msg),
                        }
                    )
                    failed_written.append(reject_task(t, cfg, scrub_paths(msg)))  # its windows: rejects
                    failed_windows += len(t.windows)
                    continue
                results.append(res)
                advance(res)
            warnings.extend(_collect_warnings(client))
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
    for w in [r["written"] for r in results] + failed_written:
        rows_per_split.update(w.get("rows", {}))
        files.extend(w.get("files", []))
        bytes_written += int(w.get("bytes", 0))
    data_files = [f for f in files if f.startswith("data/")]
    rejects_files = [f for f in files if f.startswith("rejects/")]
    rejected: Counter[str] = Counter()
    for st in stats.stages.values():
        rejected.update(st.rejected)
    if failed_windows:
        rejected["task_failed"] += failed_windows
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
        + task_failures,
        "counts": {
            "scenes": len(p.scenes),
            "tasks": len(p.tasks),
            "tasks_reused": len(done),
            "tasks_rerun": dict(sorted(state.rerun.items())),  # why finished tasks ran again
            "tasks_failed": len(task_failures),
            "files_removed": len(removed),  # task files of an earlier run that the plan does not make
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
        "warnings": [
            {k: t[k] for k in ("logger", "level", "count", "first")} for t in logtally.merge(warnings)
        ],
        "pretty_name": f"SAR triplets: {cfg.name}",
    }
    manifest["metadata"] = write_metadata(out, manifest["files"])  # the image-free index, from the shards
    write_card(out, manifest, COLUMN_DOCS)
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    return manifest


def _retry_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per stage with its clients' retry and error counters, by kind (e.g. llm_retries_http_429)."""
    out = []
    for stage, st in manifest["stages"].items():
        kinds = {
            k: v
            for k, v in sorted((st.get("extra") or {}).items())
            if v and ("retries" in k or "errors_" in k or k.endswith("_failed"))
        }
        if kinds:
            out.append(f"  retried ({stage}): " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    return out


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
    lines += _retry_lines(manifest)
    for w in manifest.get("warnings", []):
        lines.append(f"  {w['level'].lower()} x{w['count']}: {w['first']} ({w['logger']})")
    if c["tasks_reused"]:
        lines.append(f"  reused {c['tasks_reused']} finished task(s) from an earlier run")
    rerun = c.get("tasks_rerun") or {}
    if rerun:
        lines.append(
            "  ran again: "
            + ", ".join(f"{n} {why}" for why, n in rerun.items())
            + " task(s) of an earlier run"
        )
    if c.get("files_removed"):
        lines.append(f"  removed {c['files_removed']} file(s) of an earlier run that this plan does not make")
    if manifest["synthetic_embeddings"]:
        lines.append("  NOTE: aef_* columns hold the demo's SYNTHETIC embeddings, not AlphaEarth")
    return "\n".join(lines)


__all__ = ["BuildError", "ConfigError", "Plan", "build", "plan", "summary"]
