"""Planning a build on the driver: the scenes, the windows inside the region, and the tasks.

A task is identified by its key (pipelines/resume.py `task_key`), not by its number: the same windows of
the same scene under the same row-shaping config give the same key, whatever the execution settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from pipelines.resume import task_key
from pipelines.stages import TaskSpec
from triplet_builder.area import area_polygon
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.footprint import lonlat_polygon
from triplet_builder.geo import scene_geo
from triplet_builder.record import SceneRef, Window
from triplet_builder.sources import SceneFailure, discover_scenes
from triplet_builder.tiling import ChipTooLargeError, lay_windows


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
    # (lon, lat) of each task's windows (the mean of their centres), by task id: where on the ground a task
    # works, for placing tasks over the same ground on one worker (pipelines/placement.py)
    task_centres: dict[int, tuple[float, float]] = field(default_factory=dict)


def _window_polygons(scene: SceneRef, windows: list[Window]) -> list[BaseGeometry]:
    geo = scene_geo(scene)
    polys = []
    for w in windows:
        lon, lat = geo.window_outline(w, per_edge=2)
        polys.append(lonlat_polygon(lon, lat))
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
    centres: dict[int, tuple[float, float]] = {}
    kept: list[SceneRef] = []
    outside = 0
    per_scene: dict[str, int] = {}
    intersecting = 0
    near_duplicate = 0
    for s in in_dates:
        geo = scene_geo(s)
        full = Window(0, 0, s.width, s.height, s.width, s.height)
        lon, lat = geo.window_outline(full, per_edge=16)
        if not lonlat_polygon(lon, lat).intersects(region):
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
        inside_polys = [(w, p) for w, p in zip(windows, polys, strict=True) if region.intersects(p)]
        inside = [w for w, _ in inside_polys]
        outside += len(windows) - len(inside)
        per_scene[s.scene_id] = len(inside)
        if not inside:
            continue
        kept.append(s)
        for i in range(0, len(inside), cfg.chips_per_task):
            chunk = tuple(inside[i : i + cfg.chips_per_task])
            c = shapely.centroid([p for _, p in inside_polys[i : i + cfg.chips_per_task]])
            centres[len(tasks)] = (float(np.mean(shapely.get_x(c))), float(np.mean(shapely.get_y(c))))
            tasks.append(TaskSpec(len(tasks), s, chunk, task_key(cfg.config_hash(), len(tasks), s, chunk)))
    if in_dates and intersecting == 0 and not failures:
        raise BuildError(
            f"the region area {region.bounds} is outside every scene ({len(in_dates)} in the dates): "
            "check area or scenes.paths"
        )
    return Plan(kept, tasks, failures, skipped, outside, per_scene, near_duplicate, centres)


def preflight(cfg: RegionConfig) -> None:
    """What the workers would only find out task by task: say it once, before any work."""
    llm = cfg.text.llm
    if cfg.text.writer == "llm" and llm is not None:
        if not os.environ.get(llm.api_key_env) and not (llm.base_url or os.environ.get("OPENAI_BASE_URL")):
            raise ConfigError(
                f"text.llm: environment variable {llm.api_key_env} is not set; export your API key there, "
                "or set text.llm.base_url to a local server that needs none"
            )


__all__ = ["BuildError", "Plan", "plan", "preflight"]
