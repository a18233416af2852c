"""The executor: the ONLY module that touches Dask.

Plans the run on the driver (scenes, windows inside the region, tasks), runs `run_task` per task on a
dask.distributed LocalCluster (or an existing scheduler), shows a progress bar per stage, skips tasks
finished by an earlier run of the same config, records every failure without stopping the others, and
writes the dataset card and then the manifest, last.
"""

from __future__ import annotations

import logging
import platform
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.limit import limit_plan, refuse_loss
from pipelines.output import build_lock, check_output, claim_output
from pipelines.placement import preferred_workers
from pipelines.plan import BuildError, Plan, plan, preflight
from pipelines.progress import StageProgress
from pipelines.resume import remove_unclaimed, resume_state
from pipelines.stages import TaskFailed, TaskSpec, reject_task, run_task
from pipelines.summary import summary
from schemas import COLUMN_DOCS, SCHEMA_VERSION
from triplet_builder import __version__, logtally
from triplet_builder.area import area_polygon
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.portable import portable_config, portable_uri, scrub_paths
from triplet_builder.stages.assemble import plugin_summary, stage_names
from triplet_builder.stages.base import Stats
from triplet_builder.text.quality import checker_counts, text_quality
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


def _client(
    cfg: RegionConfig, scheduler: str | None, workers: int | None, tasks: int, dashboard: bool = False
) -> Any:
    """A client of the scheduler named (CLI --scheduler, then the region's `dask.scheduler`), else of a
    LocalCluster of at most `workers` processes (never more than the tasks to run); its dashboard on a
    free port when `dashboard` (it needs bokeh)."""
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
            dashboard_address=":0" if dashboard else None,
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
    progress: bool | StageProgress = True,
    region_file: str | None = None,
    limit: int | None = None,
    dashboard: bool = False,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build the dataset of a region; returns the manifest (also written to output.dir/manifest.json).

    Holds the output folder's lock throughout (pipelines/output.py); reuses the tasks an earlier run
    finished with the same key and intact files, and removes every task file the plan does not make
    (pipelines/resume.py). `limit`: only the plan's first N windows (pipelines/limit.py). `progress`:
    per-stage bars, or a StageProgress to fill (pipelines/progress.py). `announce` receives the one line
    with the Dask dashboard's address when the cluster has one."""
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc)
    preflight(cfg)
    out = check_output(cfg, overwrite)
    with build_lock(out):
        claim_output(out, cfg, overwrite)
        p = plan(cfg)
        windows_planned = sum(len(t.windows) for t in p.tasks)
        if limit is not None:
            p = limit_plan(p, limit, cfg.config_hash())
        run = _Run(scheduler, workers, progress, dashboard, announce, limit, windows_planned)
        return _build(cfg, out, p, run, region_file, t_start, started)


@dataclass(frozen=True)
class _Run:
    """How this build runs (none of it shapes a row)."""

    scheduler: str | None
    workers: int | None
    progress: bool | StageProgress
    dashboard: bool
    announce: Callable[[str], None] | None
    limit: int | None
    windows_planned: int


PROGRESS_EVERY_S = 0.5  # how often a running task reports its per-stage counts


def _run_reporting(spec: TaskSpec, cfg: RegionConfig, topic: str) -> dict[str, Any]:
    """`run_task` on a worker, its per-stage counts sent to the driver as Dask events under `topic`."""
    from dask.distributed import get_worker

    worker = get_worker()

    def report(stats: dict[str, Any]) -> None:
        try:
            worker.log_event(topic, {"task_id": spec.task_id, "key": spec.key, "stats": stats})
        except Exception as e:  # progress is never worth a task
            log.debug("progress report of task %d not sent: %s", spec.task_id, e)

    return run_task(spec, cfg, report=report, report_every_s=PROGRESS_EVERY_S)


def _recheck(client: Any, out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Submit the consistency checker's re-run (the dataset card's text_quality) on each shard of one
    finished task, one worker task per shard: submitted as each build task finishes, so the re-checks
    fill the workers the build's last tasks leave idle, rather than all of them in this process after."""
    files = sorted(f for f in result["written"].get("files", []) if f.startswith("data/"))
    return {f: client.submit(checker_counts, str(out / f), pure=False) for f in files}


def _rechecked(client: Any, futures: dict[str, Any]) -> dict[str, dict[str, int] | None]:
    """The re-checks' counts by shard; {} when a worker was lost (text_quality then checks them here)."""
    try:
        return dict(zip(futures, client.gather(list(futures.values())), strict=True))
    except Exception as e:
        log.debug("re-check on the workers failed (%s); checking in this process", e)
        return {}


def _placement(
    client: Any, todo: list[TaskSpec], centres: dict[int, tuple[float, float]]
) -> dict[int, dict[str, Any]]:
    """`client.submit` arguments of each task: its preferred worker (pipelines/placement.py), which
    other workers may still take; none with a single worker."""
    workers = sorted(client.scheduler_info().get("workers", {}))
    if len(workers) < 2:
        return {}
    where = preferred_workers([t.task_id for t in todo], centres, len(workers))
    return {t: {"workers": [workers[w]], "allow_other_workers": True} for t, w in where.items()}


def _dashboard_line(client: Any) -> str | None:
    """The dashboard's address, or None when the scheduler serves none (no bokeh)."""
    try:
        info = client.scheduler_info()
    except Exception:
        return None
    if "dashboard" not in (info.get("services") or {}):
        return None
    return f"Dask dashboard: {client.dashboard_link}"


def _build(
    cfg: RegionConfig,
    out: Path,
    p: Plan,
    run: _Run,
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
    if run.limit is not None:
        refuse_loss(out, state.done, run.limit)
    removed = remove_unclaimed(out, state.done)
    todo, done = state.todo, state.done
    log.info(
        "plan: %d scene(s), %d window(s) in %d task(s): %d to run, %d reused",
        len(p.scenes),
        sum(len(t.windows) for t in p.tasks),
        len(p.tasks),
        len(todo),
        len(done),
    )
    results: list[dict[str, Any]] = list(done)
    task_failures: list[dict[str, Any]] = []
    failed_written: list[dict[str, Any]] = []
    failed_windows = 0
    total_windows = sum(len(t.windows) for t in p.tasks)
    names = stage_names(cfg.stages, labels=cfg.facts.labels is not None)  # the assembled list
    tracker = (
        run.progress
        if isinstance(run.progress, StageProgress)
        else StageProgress(names, total_windows, bars=bool(run.progress))
    )
    stats = Stats()
    for name in names:
        stats[name]
    for res in done:
        stats.merge(Stats.from_dict(res["stats"]))
        tracker.finish(res["task_id"], res["stats"])
    warnings: list[list[dict[str, Any]]] = []
    checked: dict[str, dict[str, int] | None] = {}
    if todo:
        client = _client(cfg, run.scheduler, run.workers, len(todo), run.dashboard)
        topic = f"sar-triplets-progress-{uuid.uuid4().hex}"  # this build's: a shared scheduler has others
        keys = {t.key for t in todo}

        def on_event(event: tuple[float, dict[str, Any]]) -> None:
            msg = event[1]
            if isinstance(msg, dict) and msg.get("key") in keys:
                tracker.report(int(msg["task_id"]), msg["stats"])

        try:
            from dask.distributed import as_completed

            line = _dashboard_line(client) if (run.dashboard or run.scheduler or cfg.scheduler) else None
            if line is None and run.dashboard:
                line = "Dask dashboard: not served (it needs bokeh: pip install 'bokeh>=3.1')"
            if line and run.announce is not None:
                tracker.say(line, run.announce)
            client.subscribe_topic(topic, on_event)
            rechecks: dict[str, Any] = {}
            for res in done:  # reused tasks' shards are re-checked too (the card covers every row)
                rechecks.update(_recheck(client, out, res))
            place = _placement(client, todo, p.task_centres)
            futures = {
                client.submit(
                    _run_reporting,
                    t,
                    cfg,
                    topic,
                    key=f"task-{t.task_id:05d}-{t.key}",
                    pure=False,
                    **place.get(t.task_id, {}),
                ): t
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
                    tracker.fail(t.task_id, len(t.windows))
                    continue
                results.append(res)
                rechecks.update(_recheck(client, out, res))
                stats.merge(Stats.from_dict(res["stats"]))
                tracker.finish(res["task_id"], res["stats"])
            warnings.extend(_collect_warnings(client))
            checked = _rechecked(client, rechecks)
        finally:
            client.unsubscribe_topic(topic)
            client.close()
            cluster = getattr(client, "cluster", None)
            if cluster is not None:
                cluster.close()
    tracker.close()
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
        "limit": run.limit,  # `build --limit N`: only the plan's first N windows (null: the full plan)
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
            "windows_planned": run.windows_planned,  # before --limit
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
        "text_quality": text_quality(out, data_files, checked),  # over the kept rows (text/quality.py)
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


__all__ = ["BuildError", "ConfigError", "Plan", "build", "plan", "summary"]
