"""Sentinel-1 GRD scenes from Earth Engine (`COPERNICUS/S1_GRD`: sigma0 in dB, 10 m), read window by window.

`find_ee_scenes(cfg)` lists the images over the region (`ee.data.listImages`: dates, region, instrument
mode and orbit pass filtered by the server; polarisations and coverage checked here) and turns each into
a VIRTUAL affine scene: no file, a UTM grid (zone of the region centre, `scenes.pixel_size_m`) over the
intersection of the image footprint and the region. Its bands are `ee://COPERNICUS/S1_GRD/<id>` URIs.

`EarthEngineWindowReader` reads chip windows of such a scene: one computePixels request per chip on
the chip's own grid (all polarisations at once, masked pixels unmasked to a sentinel and returned as
NaN), the windows of a batch fetched concurrently through the shared runner (bounded concurrency,
retries, splitting, on-disk cache).

The bands carry their Earth Engine settings (`EarthEngineBandRef.settings`: endpoint, project, key
path, concurrency, cache folder; never a secret), so a worker that gets the SceneRef can read it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shp_transform

from triplet_builder.area import area_polygon
from triplet_builder.config import ConfigError, EarthEngineScenesConfig
from triplet_builder.earthengine import (
    ClientSettings,
    ComputePixelsRunner,
    EarthEngineError,
    EarthEngineSetupError,
    Grid,
    ImageSpec,
    PixelRequest,
    TransientError,
    backoff_delay,
    band_stack,
    classify,
    initialize,
)
from triplet_builder.geo import scene_geo, utm_crs_for
from triplet_builder.record import Backscatter, BandRef, GeorefKind, Scale, SceneRef, Window
from triplet_builder.sources.local import SceneFailure

if TYPE_CHECKING:
    from triplet_builder.config import RegionConfig

logger = logging.getLogger(__name__)

URI_SCHEME = "ee://"
SENTINEL = -9999.0
S1_GRD = "COPERNICUS/S1_GRD"  # the collection whose convention (sigma0, dB) we know
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EarthEngineBandRef(BandRef):
    """A band of an Earth Engine image (`uri` = ee://<asset id>) and how to reach Earth Engine."""

    settings: ClientSettings = field(default_factory=ClientSettings)

    @property
    def asset(self) -> str:
        return self.uri.removeprefix(URI_SCHEME)


def is_ee_scene(scene: SceneRef) -> bool:
    return bool(scene.bands) and scene.bands[0].uri.startswith(URI_SCHEME)


# --------------------------------------------------------------------------------------------- search
def _periods(cfg: RegionConfig) -> list[tuple[date, date]]:
    """[start, end) date ranges to search: one per year, or the date range."""
    if cfg.years is not None:
        return [(date(y, 1, 1), date(y + 1, 1, 1)) for y in cfg.years]
    assert cfg.dates is not None
    return [(cfg.dates.start, cfg.dates.end + timedelta(days=1))]


def _retrying(fn: Callable[[], T], settings: ClientSettings, what: str) -> T:
    """`fn()` with the bounded jittered retries of transient Earth Engine errors."""
    import random

    rng = random.Random()
    for attempt in range(settings.max_retries + 1):
        try:
            return fn()
        except Exception as e:
            kind = classify(e)
            if kind != "transient" or attempt == settings.max_retries:
                raise EarthEngineError(
                    f"Earth Engine {what} failed: {str(e).splitlines()[0] if str(e) else e!r}"
                ) from None
            time.sleep(backoff_delay(attempt, settings.backoff_s, settings.max_backoff_s, rng))
    raise TransientError(what)  # unreachable


def list_images(
    settings: ClientSettings, src: EarthEngineScenesConfig, region: BaseGeometry, start: date, end: date
) -> list[dict[str, Any]]:
    """The catalogue entries of `src.collection` over the region with startTime in [start, end)."""
    import ee

    props = [f'instrumentMode="{src.instrument_mode}"']
    if src.orbit_direction is not None:
        props.append(f'orbitProperties_pass="{src.orbit_direction.upper()}"')
    params = {
        "parent": src.collection,
        "startTime": f"{start.isoformat()}T00:00:00Z",
        "endTime": f"{end.isoformat()}T00:00:00Z",
        # the convex hull: a small superset of the area (a detailed outline would bloat the GET query);
        # the exact coverage of the area is checked here afterwards
        "region": mapping(shapely.convex_hull(region).simplify(0.001)),
        "properties": props,
    }
    out = _retrying(lambda: ee.data.listImages(dict(params)), settings, f"listImages {src.collection}")
    return list(out.get("images") or [])


def _acquired(asset: dict[str, Any]) -> datetime:
    t = asset.get("startTime")
    if t:
        return datetime.fromisoformat(str(t).replace("Z", "+00:00")).astimezone(timezone.utc)
    ms = asset.get("properties", {}).get("system:time_start")
    if ms is None:
        raise ValueError("no startTime")
    return datetime.fromtimestamp(int(ms) / 1000.0, tz=timezone.utc)


@dataclass(frozen=True)
class _Candidate:
    asset: dict[str, Any]
    coverage: float
    acquired: datetime
    utm_area: BaseGeometry


def _candidate(
    asset: dict[str, Any], src: EarthEngineScenesConfig, region_utm: BaseGeometry, to_utm: Transformer
) -> tuple[_Candidate | None, str]:
    """The image as a candidate scene, or None and why it does not qualify."""
    props = asset.get("properties", {})
    have = {str(p).upper() for p in props.get("transmitterReceiverPolarisation", [])}
    missing = [p for p in src.polarisations if p not in have]
    if missing:
        return None, f"lacks {'+'.join(missing)}"
    if props.get("instrumentMode", src.instrument_mode) != src.instrument_mode:
        return None, f"mode {props.get('instrumentMode')}"
    direction = str(props.get("orbitProperties_pass", "")).lower() or None
    if src.orbit_direction is not None and direction != src.orbit_direction:
        return None, f"orbit {direction}"
    if "geometry" not in asset:
        return None, "no footprint"
    foot = shp_transform(to_utm.transform, shape(asset["geometry"]))
    inter = foot.intersection(region_utm)
    coverage = inter.area / region_utm.area if region_utm.area > 0 else 0.0
    if inter.is_empty or coverage < src.min_coverage:
        return None, f"covers {coverage:.0%} of the region"
    try:
        acquired = _acquired(asset)
    except ValueError:
        return None, "no acquisition time"
    return _Candidate(asset, coverage, acquired, inter), ""


def scene_for(cand: _Candidate, src: EarthEngineScenesConfig, crs: str, settings: ClientSettings) -> SceneRef:
    """A virtual affine scene: the UTM grid at pixel_size_m over footprint x region, edges on pixel multiples."""
    ps = float(src.pixel_size_m)
    minx, miny, maxx, maxy = cand.utm_area.bounds
    x0, y1 = np.floor(minx / ps) * ps, np.ceil(maxy / ps) * ps
    width = max(1, int(np.ceil((maxx - x0) / ps)))
    height = max(1, int(np.ceil((y1 - miny) / ps)))
    asset_id = str(cand.asset.get("id") or cand.asset["name"].split("/assets/", 1)[1])
    props = cand.asset.get("properties", {})
    platform = str(props.get("platform_number", "")).upper()
    bands = tuple(
        EarthEngineBandRef(f"{URI_SCHEME}{asset_id}", i + 1, pol, settings)
        for i, pol in enumerate(src.polarisations)
    )
    direction = str(props.get("orbitProperties_pass", "")).lower() or None
    return SceneRef(
        scene_id=asset_id.rsplit("/", 1)[-1],
        bands=bands,
        acquired=cand.acquired,
        acquired_source="earthengine",
        sensor=f"Sentinel-1{platform}" if platform else "Sentinel-1",
        mode=props.get("instrumentMode"),
        orbit_direction=direction,
        scale=Scale.DB,
        scale_source="declared",
        # COPERNICUS/S1_GRD is sigma0 in dB, calibrated and terrain-corrected (not flattened) by Google, as
        # its catalogue page states; another collection states nothing we know of: unknown, not a guess
        backscatter=Backscatter.SIGMA0 if src.collection == S1_GRD else Backscatter.UNKNOWN,
        backscatter_source="earthengine" if src.collection == S1_GRD else "none",
        georef=GeorefKind.AFFINE,
        crs=crs,
        width=width,
        height=height,
        pixel_size_m=ps,
        nodata=None,
        product="GRD",
        transform=(ps, 0.0, float(x0), 0.0, -ps, float(y1)),
    )


def find_ee_scenes(
    cfg: RegionConfig, *, credentials: Any = None
) -> tuple[list[SceneRef], list[SceneFailure]]:
    """The Sentinel-1 images of the region and dates as virtual scenes (best coverage first, then earliest,
    at most `scenes.max_scenes`). Missing project / credentials raise ConfigError (one line)."""
    src = cfg.scenes
    if not isinstance(src, EarthEngineScenesConfig):
        raise ValueError("find_ee_scenes needs scenes.type earthengine")
    settings = ClientSettings.from_config(cfg.earthengine, cfg.cache_root())
    try:
        initialize(settings, credentials)
    except EarthEngineSetupError as e:
        raise ConfigError(str(e)) from None
    region = area_polygon(cfg.area)
    c = region.centroid
    crs = utm_crs_for(c.x, c.y)
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    region_utm = shp_transform(to_utm.transform, region)
    cands: list[_Candidate] = []
    failures: list[SceneFailure] = []
    seen: set[str] = set()
    for start, end in _periods(cfg):
        try:
            assets = list_images(settings, src, region, start, end)
        except EarthEngineError as e:
            failures.append(
                SceneFailure(f"{URI_SCHEME}{src.collection}", "search_failed", f"{e}; rerun later")
            )
            continue
        for asset in assets:
            key = str(asset.get("id") or asset.get("name"))
            if key in seen:
                continue
            seen.add(key)
            cand, why = _candidate(asset, src, region_utm, to_utm)
            if cand is None:
                logger.info("Earth Engine image %s not used: %s", key, why)
                continue
            cands.append(cand)
    cands.sort(key=lambda k: (-round(k.coverage, 6), k.acquired))
    if src.max_scenes is not None:
        cands = cands[: src.max_scenes]
    scenes = [scene_for(k, src, crs, settings) for k in sorted(cands, key=lambda k: k.acquired)]
    logger.info("Earth Engine: %d scene(s) of %s over the region", len(scenes), src.collection)
    return scenes, failures


# --------------------------------------------------------------------------------------------- reader
class EarthEngineWindowReader:
    """Chip windows of virtual Earth Engine scenes as (P, H, W) float32 arrays (NaN where masked)."""

    def __init__(self, settings: ClientSettings, *, credentials: Any = None) -> None:
        self.settings = settings
        self.runner = ComputePixelsRunner(settings, credentials=credentials)

    def request(self, scene: SceneRef, window: Window) -> PixelRequest:
        """One request per chip: the chip's grid (resampled to its output size), all polarisations."""
        affine = scene_geo(scene).affine_of_window(window)
        if affine is None or scene.crs is None:
            raise ValueError(f"scene {scene.scene_id} is not an affine virtual scene")
        band0 = scene.bands[0]
        image = ImageSpec(
            bands=scene.polarisations,
            sentinel=SENTINEL,
            image=band0.uri.removeprefix(URI_SCHEME),
        )
        return PixelRequest(image, Grid(scene.crs, affine, window.out_width, window.out_height))

    def read_many(self, scene: SceneRef, windows: Sequence[Window]) -> list[np.ndarray]:
        """(P, H, W) float32 per window, in the scene's band order; NaN where Earth Engine has no data."""
        arrays = self.runner.fetch_many([self.request(scene, w) for w in windows])
        return [self.values(scene, arr) for arr in arrays]

    def submit(self, scene: SceneRef, window: Window) -> Future[np.ndarray]:
        """Start fetching one window; `values(scene, future.result())` gives its (P, H, W) array."""
        return self.runner.submit(self.request(scene, window))

    @staticmethod
    def values(scene: SceneRef, arr: np.ndarray) -> np.ndarray:
        values, valid = band_stack(arr, scene.polarisations, SENTINEL)
        values[:, ~valid] = np.nan
        return values

    def drain_counters(self) -> dict[str, int]:
        return {f"ee_{k}": v for k, v in self.runner.drain().items()}

    def close(self) -> None:
        self.runner.close()
