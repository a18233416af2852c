"""The assembled stage list, and one task's run: window specs in, shard files and statistics out.

This module does not import dask: `run_task` is a plain function the executor ships to workers, and
tests call it directly. Only window specs (a SceneRef and a list of Windows) travel; the worker opens
the raster itself.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from schemas.codec import Stretch
from triplet_builder import __version__
from triplet_builder.config import RegionConfig
from triplet_builder.failures import output_problem, task_failure_message
from triplet_builder.record import ChipRecord, SceneRef, Window, chip_id_for
from triplet_builder.stages.assemble import assemble, stage_names
from triplet_builder.stages.base import Stage, Stats, run_stages
from triplet_builder.stages.embed import Embed, make_provider
from triplet_builder.stages.facts import Facts
from triplet_builder.stages.filter import Filter
from triplet_builder.stages.georef import Georeference
from triplet_builder.stages.labels import Labels
from triplet_builder.stages.screen import Screen
from triplet_builder.stages.text import WriteText
from triplet_builder.stages.tile import ReadChips
from triplet_builder.stages.write import Write
from triplet_builder.writers.parquet import ShardWriter

log = logging.getLogger(__name__)

STAGE_NAMES = stage_names()  # the core list; a region file's plugins add theirs (stage_names(cfg.stages))


class TaskFailed(RuntimeError):
    """One task could not finish; a one-line message naming the scene, its file and the cause."""


@dataclass(frozen=True)
class TaskSpec:
    """What travels to a worker: no pixels.

    `key` is the task's identity (pipelines/resume.py `task_key`: the config hash, the scene and the
    windows): a rerun reuses a finished task only when its marker holds the same key, never by number."""

    task_id: int
    scene: SceneRef
    windows: tuple[Window, ...]
    key: str = ""


def build_stages(cfg: RegionConfig, task_id: int = 0) -> list[Stage]:
    """The assembled list (triplet_builder/stages/assemble.py): tile -> georeference -> embed -> screen ->
    facts -> [labels] -> [plugins] -> text -> filter -> write; the writer writes task `task_id`'s shards."""
    stretch = Stretch(**cfg.output.stretch.model_dump())
    georef = Georeference(
        block_km=cfg.split.block_km, validation=cfg.split.validation, test=cfg.split.test, salt=cfg.split.salt
    )
    core: dict[str, Callable[[], Stage]] = {
        # the tile stage reads no window that georeference would reject (split_guard...): cheap check first
        ReadChips.name: lambda: ReadChips(
            max_nodata_fraction=cfg.chip.max_nodata_fraction,
            margin=cfg.facts.cfar.margin,
            guard=georef.locate,
        ),
        Georeference.name: lambda: georef,
        Embed.name: lambda: Embed(
            make_provider(cfg.embeddings, earthengine=cfg.earthengine, cache_dir=cfg.cache_root()),
            grid=cfg.embeddings.grid,
        ),
        Screen.name: lambda: Screen(min_std_db=cfg.filter.min_std_db, dedupe=cfg.filter.dedupe),
        Facts.name: lambda: Facts(cfg.facts),
        Labels.name: lambda: Labels(cfg.facts.labels),  # type: ignore[arg-type]  # only when set
        WriteText.name: lambda: WriteText(cfg.text, cache_dir=cfg.cache_root() / "llm", stretch=stretch),
        Filter.name: lambda: Filter(),
        Write.name: lambda: Write(_shard_writer(cfg, task_id, stretch)),
    }
    stages: list[Stage] = []
    for p in assemble(cfg.stages, labels=cfg.facts.labels is not None):
        if p.entry is None:
            stages.append(core[p.name]())
        else:
            model = p.cls.config_model  # type: ignore[attr-defined]
            stages.append(p.cls(model.model_validate(cfg.stages[p.entry].config), cfg))  # type: ignore[call-arg]
    return stages


def task_marker(out_dir: Path, task_id: int) -> Path:
    return out_dir / "_tasks" / f"task-{task_id:05d}.json"


def _shard_writer(cfg: RegionConfig, task_id: int, stretch: Stretch) -> ShardWriter:
    return ShardWriter(
        Path(cfg.output.dir),
        task_id,
        config_hash=cfg.config_hash(),
        pipeline_version=__version__,
        max_rows_per_shard=cfg.output.max_rows_per_shard,
        row_group_rows=cfg.output.row_group_rows,
        row_group_bytes=cfg.output.row_group_bytes,
        stretch=stretch,
        backscatter_column=cfg.output.backscatter_column,
    )


def reject_task(spec: TaskSpec, cfg: RegionConfig, detail: str) -> dict[str, Any]:
    """A task that raised: write its windows to its rejects table (reason `task_failed`, a transient
    reason), so every candidate chip ends somewhere. No marker: a rerun runs the task again."""
    stretch = Stretch(**cfg.output.stretch.model_dump())
    with _shard_writer(cfg, spec.task_id, stretch) as writer:
        for rec in _records(spec):
            writer.reject(rec.reject("task", "task_failed", detail))
        return writer.close()


def _records(spec: TaskSpec) -> Iterator[ChipRecord]:
    for w in spec.windows:
        yield ChipRecord(
            chip_id=chip_id_for(spec.scene.scene_id, w), scene=spec.scene, window=w, task_id=spec.task_id
        )


Report = Callable[[dict[str, Any]], None]


def run_task(
    spec: TaskSpec, cfg: RegionConfig, *, report: Report | None = None, report_every_s: float = 0.5
) -> dict[str, Any]:
    """`_run_task`, with an output folder that fails while the task publishes its shards or its marker
    (full disk, size limit, permissions) told in one line naming the folder.

    `report`, when given, receives the task's cumulative per-stage statistics (Stats.to_dict) while it
    runs, at most once per `report_every_s` (0: after every record leaving the last stage): the
    executor's progress bars (pipelines/progress.py) follow each stage's own work from these."""
    try:
        return _run_task(spec, cfg, report, report_every_s)
    except OSError as e:
        msg = output_problem(e, cfg.output.dir)
        if msg is None:
            raise
        failure = f"task {spec.task_id} (scene {spec.scene.scene_id}): {msg}"
    raise TaskFailed(failure)


def _run_task(
    spec: TaskSpec, cfg: RegionConfig, report: Report | None = None, report_every_s: float = 0.5
) -> dict[str, Any]:
    """Run the stage list over one task's windows and write its shards; return its statistics.

    The shard files appear under their final names only when the task has finished (temp + rename),
    and the task's marker file is written after them, with the task's key and each file's size and
    SHA-256: a rerun skips a task only when its marker has the same key and its files are intact.
    """
    t0 = time.perf_counter()
    out_dir = Path(cfg.output.dir)
    stats = Stats()
    stages = build_stages(cfg, spec.task_id)
    write = stages[-1]
    assert isinstance(write, Write)
    failure: str | None = None
    # GDAL's block cache defaults to 5 % of RAM per process; a task reads each window once, so keep it small
    with rasterio.Env(GDAL_CACHEMAX=cfg.gdal_cache_mb * 1024 * 1024):
        try:
            last = time.monotonic()
            for _ in run_stages(stages, _records(spec), stats):
                if report is not None and time.monotonic() - last >= report_every_s:
                    report(stats.to_dict())
                    last = time.monotonic()
            written = write.written
            assert written is not None
        except Exception as e:
            for st in stages:
                st.abort()  # nothing of this task reaches a final name
            # the advice follows the cause: a full disk is not a corrupt scene (triplet_builder/failures.py)
            failure = task_failure_message(
                e,
                scene_id=spec.scene.scene_id,
                uris=list(spec.scene.uris),
                task_id=spec.task_id,
                out_dir=out_dir,
            )
        except BaseException:
            for st in stages:
                st.abort()
            raise
        finally:
            for st in stages:
                st.close()
    if failure is not None:
        # raised outside the handler: an exception context (e.g. a rasterio error) may not pickle
        raise TaskFailed(failure)
    result = {
        "task_id": spec.task_id,
        "scene_id": spec.scene.scene_id,
        "windows": len(spec.windows),
        "stats": stats.to_dict(),
        "written": written,
        "seconds": round(time.perf_counter() - t0, 3),
        "config_hash": cfg.config_hash(),
        "key": spec.key,
    }
    marker = task_marker(out_dir, spec.task_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(result, sort_keys=True, indent=1))
    os.replace(tmp, marker)
    return result
