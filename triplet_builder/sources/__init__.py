"""Scene sources: where the SAR scenes of a region come from.

`discover_scenes(cfg)` dispatches on `scenes.type`:
- local: files, folders or globs of GeoTIFF / COG / SAFE (sources/local.py);
- earthengine: Sentinel-1 GRD from Earth Engine, read window by window (sources/earthengine.py);
- stac: Sentinel-1 RTC / GRD COGs found through a STAC API (sources/stac.py).
Every source returns `SceneRef`s (what workers need to read the scene, no pixels) and the failures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


class SourceError(RuntimeError):
    """A scene source that cannot answer (e.g. a STAC search that keeps failing); one actionable line."""


from triplet_builder.config import EarthEngineScenesConfig, SceneSourceConfig, StacScenesConfig  # noqa: E402
from triplet_builder.sources.local import SceneFailure, find_scenes  # noqa: E402

if TYPE_CHECKING:
    from triplet_builder.config import RegionConfig
    from triplet_builder.record import SceneRef


def discover_scenes(cfg: RegionConfig) -> tuple[list[SceneRef], list[SceneFailure]]:
    """The scenes of the region file's source (not yet filtered by date or area for local sources)."""
    src = cfg.scenes
    if isinstance(src, SceneSourceConfig):
        return find_scenes(src)
    if isinstance(src, EarthEngineScenesConfig):
        from triplet_builder.sources.earthengine import find_ee_scenes

        return find_ee_scenes(cfg)
    if isinstance(src, StacScenesConfig):
        from triplet_builder.sources.stac import find_stac_scenes

        return find_stac_scenes(cfg)
    raise ValueError(f"scenes.type {src.type!r} is not supported")


__all__ = ["SceneFailure", "SourceError", "discover_scenes"]
