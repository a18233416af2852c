"""The executor: the ONLY module that touches Dask.

Plans the run on the driver (scenes, windows inside the region, tasks), runs `run_task` per task on a
dask.distributed LocalCluster (or an existing scheduler), tasks over the same ground preferably on one
worker (pipelines/placement.py), shows a progress bar per stage, skips tasks finished by an earlier run
of the same config, records every failure without stopping the others, and hands what the tasks gave to
pipelines/finish.py, which writes the index, the dataset card and then the manifest, last.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.finish import Outcome, finish
from pipelines.limit import limit_plan, refuse_loss
from pipelines.output import build_lock, check_output, claim_output
from pipelines.placement import preferred_workers
from pipelines.plan import BuildError, Plan, plan, preflight
from pipelines.progress import StageProgress
from pipelines.resume import remove_unclaimed, resume_state
from pipelines.stages import TaskFailed, TaskSpec, reject_task, run_task
from pipelines.summary import summary
from triplet_builder import logtally
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.portable import portable_uri, scrub_paths
from triplet_builder.stages.assemble import stage_names
from triplet_builder.stages.base import Stats
from triplet_builder.text.quality import checker_counts

log = logging.getLogger(__name__)

# Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ), to hand
# freed memory back to the OS at once. Setting any malloc threshold also pins glibc's mmap threshold at
# 128 KiB, so every chip-sized array (a 256 px float32 plane is 256 KiB) becomes a fresh mmap whose pages
# are faulted in and zeroed again: the build's tasks took 1.15-1.22x as long (bench/RESULTS.md, "Dask's malloc
# trim"). Our LocalCluster's workers start without it; a MALLOC_TRIM_THRESHOLD_ set in the environment of
# the build still reaches them (inherited), and workers of an existing scheduler are configured by it.
WORKER_ENV_UNSET = ("MALLOC_TRIM_THRESHOLD_",)


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
        import dask

        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": None for k in WORKER_ENV_UNSET}):
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
    finished task, one worker task per shard, as each build task finishes. Their priority puts them
    ahead of the build tasks still waiting: each runs as soon as a worker frees up, while its shard is in
    the page cache, rather than all of them after the last build task (2.4 s of tail on 4 scenes with
    one worker; bench/RESULTS.md, "2 workers against 1")."""
    files = sorted(f for f in result["written"].get("files", []) if f.startswith("data/"))
    return {f: client.submit(checker_counts, str(out / f), pure=False, priority=1) for f in files}


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
    outcome = Outcome(
        results=results,
        failed_written=failed_written,
        failed_windows=failed_windows,
        task_failures=task_failures,
        stats=stats,
        names=list(names),
        reused=len(done),
        rerun=dict(state.rerun),
        removed=len(removed),
        label_counts=label_counts,
        warnings=warnings,
        checked=checked,
        limit=run.limit,
        windows_planned=run.windows_planned,
    )
    return finish(cfg, out, p, outcome, region_file, t_start, started)


__all__ = ["BuildError", "ConfigError", "Plan", "build", "plan", "summary"]
