"""Local scene source: files, folders or globs of GeoTIFF / COG scenes and Sentinel-1 SAFE products.

For each file it works out, without reading pixels beyond a small decimated sample: how it is
georeferenced (CRS + geotransform, GCPs or RPCs), the polarisation of each band, the acquisition time
(file name, tags or a JSON sidecar), the sensor, and the radiometric scale (declared, named or detected).
Files of one scene that differ only by polarisation (e.g. OPERA ..._VV.tif / ..._VH.tif) become one
multi-band scene. Problems with one file are returned as failures, never raised: the others go on.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj.exceptions import ProjError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError

from schemas.codec import detect_scale
from triplet_builder.config import SceneSourceConfig
from triplet_builder.record import Backscatter, BandRef, GeorefKind, Scale, SceneRef
from triplet_builder.sources.backscatter import backscatter_of
from triplet_builder.sources.names import parse_name, pol_in_name
from triplet_builder.sources.s1_calibration import CalibratedBandRef, uncalibrated_path
from triplet_builder.sources.safe import SafeError, read_safe

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
POLS = {"VV", "VH", "HH", "HV"}
_TIME_TAGS = (
    "ACQUISITION_START_TIME",
    "acquisition_start_time",
    "ZERO_DOPPLER_START_TIME",
    "START_TIME",
    "TIFFTAG_DATETIME",
    "DATETIME",
)


@dataclass(frozen=True)
class SceneFailure:
    uri: str
    reason: str  # machine-readable: missing, not_a_raster, no_georeferencing, no_time, no_measurement, ...
    message: str  # one line: what is wrong and what to do


@dataclass
class _FileScene:
    """One file's worth of scene description, before polarisation grouping."""

    key: str
    bands: list[BandRef]
    acquired: datetime
    acquired_source: str
    sensor: str
    mode: str | None
    orbit_direction: str | None
    scale: Scale
    scale_source: str
    backscatter: Backscatter
    backscatter_source: str
    georef: GeorefKind
    crs: str | None
    width: int
    height: int
    nodata: float | None
    product: str | None
    grid_key: tuple[Any, ...]


def expand_paths(paths: list[str]) -> tuple[list[str], list[SceneFailure]]:
    """Globs, folders and files -> sorted unique file list; unmatched entries are failures."""
    out: list[str] = []
    failures: list[SceneFailure] = []
    for p in paths:
        if any(c in p for c in "*?["):
            hits = sorted(glob.glob(p, recursive=True))
            if not hits:
                failures.append(
                    SceneFailure(p, "missing", f"scene pattern {p} matches no file: check scenes.paths")
                )
            out.extend(hits)
        elif Path(p).is_dir() and not p.rstrip("/").upper().endswith(".SAFE"):
            hits = sorted(
                str(q)
                for q in Path(p).rglob("*")
                if q.suffix.lower() in (*RASTER_SUFFIXES, ".zip") or q.name.upper().endswith(".SAFE")
            )
            if not hits:
                failures.append(
                    SceneFailure(
                        p, "missing", f"scene folder {p} holds no .tif/.tiff/.zip/.SAFE: check scenes.paths"
                    )
                )
            out.extend(hits)
        elif Path(p).exists():
            out.append(p)
        else:
            failures.append(SceneFailure(p, "missing", f"scene file {p} not found: check scenes.paths"))
    return list(dict.fromkeys(out)), failures


def _sidecar(path: str) -> dict[str, Any]:
    for cand in (Path(path + ".json"), Path(path).with_suffix(".json")):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"sidecar {cand} is not valid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(data, dict):
                raise ValueError(f"sidecar {cand} must be a JSON object")
            return {**data, "_path": str(cand)}
    return {}


def _parse_time(value: str) -> datetime | None:
    value = value.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y%m%dT%H%M%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _georef(ds: rasterio.io.DatasetReader) -> tuple[GeorefKind, str | None] | None:
    if ds.crs is not None and not ds.transform.is_identity:
        return GeorefKind.AFFINE, ds.crs.to_string()
    gcps, gcp_crs = ds.gcps
    if gcps:
        return GeorefKind.GCPS, (gcp_crs.to_string() if gcp_crs else "EPSG:4326")
    if ds.rpcs is not None:
        return GeorefKind.RPCS, "EPSG:4326"
    return None


def inspect_file(path: str, cfg: SceneSourceConfig) -> list[_FileScene] | SceneFailure:
    """Describe one file (or SAFE product). Returns a failure instead of raising."""
    name = Path(path).name
    if name.lower().endswith(".zip") or name.upper().endswith(".SAFE") or name == "manifest.safe":
        return _inspect_safe(path, cfg)
    try:
        sidecar = _sidecar(path)
    except ValueError as e:
        return SceneFailure(path, "bad_sidecar", f"{e}: fix or remove it")
    try:
        ds = rasterio.open(path)
    except RasterioIOError:
        return SceneFailure(
            path, "not_a_raster", f"{path} is not a raster GDAL can read: remove it from scenes.paths"
        )
    with ds:
        geo = _georef(ds)
        if geo is None:
            return SceneFailure(
                path,
                "no_georeferencing",
                f"{path} has neither a CRS + geotransform nor GCPs nor RPCs: georeference it (e.g. gdalwarp) first",
            )
        info = parse_name(name)
        # acquisition time
        acquired: datetime | None = None
        source = ""
        if sidecar.get("acquired"):
            acquired, source = _parse_time(str(sidecar["acquired"])), "sidecar"
        if acquired is None and info is not None:
            acquired, source = info.start, "filename"
        if acquired is None:
            tags = ds.tags()
            for t in _TIME_TAGS:
                if t in tags and (parsed := _parse_time(tags[t])) is not None:
                    acquired, source = parsed, "tags"
                    break
        if acquired is None:
            return SceneFailure(
                path,
                "no_time",
                f"{path}: no acquisition time in the file name, tags (ACQUISITION_START_TIME) or a sidecar "
                f'{name}.json; add a sidecar with {{"acquired": "YYYY-MM-DDTHH:MM:SSZ"}}',
            )
        # polarisations, one per band
        desc = [((d or "").strip().upper()) for d in ds.descriptions]
        side_pols = sidecar.get("polarisations") or (
            [sidecar["polarisation"]] if sidecar.get("polarisation") else None
        )
        bands: list[BandRef] = []
        for i in range(ds.count):
            pol: str | None = desc[i] if desc[i] in POLS else None
            if pol is None and side_pols and i < len(side_pols):
                pol = str(side_pols[i]).upper()
            if pol is None and cfg.polarisations and i < len(cfg.polarisations):
                pol = cfg.polarisations[i].upper()
            if pol is None and ds.count == 1:
                pol = (info.polarisation if info else None) or pol_in_name(name)
            bands.append(BandRef(path, i + 1, pol or "UNKNOWN"))
        # radiometric scale: declared > sidecar > name > tags > statistics
        scale_name: str | None = None
        scale_source = ""
        if cfg.scale != "auto":
            scale_name, scale_source = cfg.scale, "declared"
        elif sidecar.get("scale"):
            scale_name, scale_source = str(sidecar["scale"]), "sidecar"
        elif info is not None and info.scale:
            scale_name, scale_source = info.scale, "filename"
        else:
            units = (ds.units[0] or "").lower() if ds.units else ""
            if units in {"db", "decibel", "decibels"}:
                scale_name, scale_source = "db", "tags"
        if scale_name is None:
            h, w = min(ds.height, 256), min(ds.width, 256)
            sample = ds.read(1, out_shape=(h, w), resampling=Resampling.nearest, masked=True).filled(np.nan)
            try:
                scale_name, scale_source = detect_scale(sample).value, "statistics"
            except ValueError:
                return SceneFailure(path, "empty", f"{path} has no valid pixels: remove it from scenes.paths")
        try:
            scale = Scale(scale_name)
        except ValueError:
            return SceneFailure(
                path, "bad_scale", f"{path}: unknown scale {scale_name!r}; use db, linear_power or amplitude"
            )
        bs_name, bs_source = backscatter_of(cfg.backscatter, sidecar, ds.tags(), info)
        try:
            backscatter = Backscatter(bs_name)
        except ValueError:
            return SceneFailure(
                path,
                "bad_backscatter",
                f"{path}: unknown backscatter {bs_name!r}; use sigma0, gamma0 or beta0",
            )
        sensor = cfg.sensor or sidecar.get("sensor") or (info.sensor if info else None) or "unknown SAR"
        kind, crs = geo
        nodata = ds.nodata
        grid_key = (
            kind.value,
            crs,
            tuple(ds.transform)[:6] if kind is GeorefKind.AFFINE else None,
            ds.width,
            ds.height,
        )
        key = (info.scene_key if info else Path(name).stem) if ds.count == 1 else Path(name).stem
        return [
            _FileScene(
                key=key,
                bands=bands,
                acquired=acquired,
                acquired_source=source,
                sensor=str(sensor),
                mode=sidecar.get("mode") or (info.mode if info else None),
                orbit_direction=sidecar.get("orbit_direction") or (info.orbit_direction if info else None),
                scale=scale,
                scale_source=scale_source,
                backscatter=backscatter,
                backscatter_source=bs_source,
                georef=kind,
                crs=crs,
                width=ds.width,
                height=ds.height,
                nodata=None if nodata is None else float(nodata),
                product=info.product if info else None,
                grid_key=grid_key,
            )
        ]


def _inspect_safe(path: str, cfg: SceneSourceConfig) -> list[_FileScene] | SceneFailure:
    try:
        meta = read_safe(path)
    except (SafeError, OSError, KeyError, ValueError) as e:
        return SceneFailure(path, "bad_safe", f"{e}")
    if not meta.measurements:
        return SceneFailure(
            path,
            "no_measurement",
            f"{path}: SAFE product {meta.product} holds no measurement rasters (annotation only); "
            "download the full product",
        )
    cals = meta.calibrations or {}
    missing = sorted(set(meta.measurements) - set(cals))
    if missing:
        return SceneFailure(
            path, "no_calibration", f"{path}: no calibration XML for {missing}; the product is incomplete"
        )
    # digital numbers through GDAL's SENTINEL1 driver (with the annotation's GCPs), calibrated to sigma0 with
    # the product's LUT in the tile stage (triplet_builder.sources.s1_calibration)
    bands: list[BandRef] = [
        CalibratedBandRef(uncalibrated_path(meta.manifest, meta.swath, pol), 1, pol, cals[pol])
        for pol in sorted(meta.measurements, key=lambda p: p not in {"VV", "HH"})
    ]
    try:
        with rasterio.open(bands[0].uri) as ds:
            geo = _georef(ds)
            width, height = ds.width, ds.height
    except RasterioIOError as e:
        return SceneFailure(path, "bad_safe", f"{path}: GDAL's SENTINEL1 driver cannot open it ({e})")
    if geo is None:
        return SceneFailure(path, "no_georeferencing", f"{path}: measurement raster has no GCPs")
    declared = cfg.backscatter != "auto"
    return [
        _FileScene(
            key=meta.product,
            bands=bands,
            acquired=meta.start,
            acquired_source="safe-manifest",
            sensor=cfg.sensor or meta.sensor,
            mode=meta.mode,
            orbit_direction=meta.orbit_direction or None,
            scale=Scale.LINEAR_POWER,  # calibrated power, whatever scenes.scale says
            scale_source="safe-calibration",
            backscatter=Backscatter(cfg.backscatter) if declared else Backscatter.SIGMA0,
            backscatter_source="declared" if declared else "safe-calibration",
            georef=geo[0],
            crs=geo[1],
            width=width,
            height=height,
            nodata=0.0,
            product="GRD",
            grid_key=(meta.product,),
        )
    ]


def group_scenes(files: list[_FileScene]) -> list[SceneRef]:
    """Merge single-polarisation files of one scene (same key, time and grid) into one SceneRef."""
    groups: dict[tuple[Any, ...], list[_FileScene]] = {}
    for f in files:
        groups.setdefault((f.key, f.acquired, f.grid_key, f.scale), []).append(f)
    scenes: list[SceneRef] = []
    for (_key, _t, _g, _s), members in groups.items():
        first = members[0]
        bands = [b for m in members for b in m.bands]
        # co-polarisation first (VV/HH), then cross-pol, then unknown
        order = {"VV": 0, "HH": 0, "VH": 1, "HV": 1}
        bands.sort(key=lambda b: (order.get(b.polarisation, 2), b.uri, b.band))
        scene_id = first.key.replace("{pol}", "+".join(b.polarisation for b in bands))
        scene_id = Path(scene_id).stem if scene_id.lower().endswith(RASTER_SUFFIXES) else scene_id
        scenes.append(
            SceneRef(
                scene_id=scene_id,
                bands=tuple(bands),
                acquired=first.acquired,
                acquired_source=first.acquired_source,
                sensor=first.sensor,
                mode=first.mode,
                orbit_direction=first.orbit_direction,
                scale=first.scale,
                scale_source=first.scale_source,
                backscatter=first.backscatter,
                backscatter_source=first.backscatter_source,
                georef=first.georef,
                crs=first.crs,
                width=first.width,
                height=first.height,
                pixel_size_m=0.0,
                nodata=first.nodata,
                product=first.product,
            )
        )
    scenes.sort(key=lambda s: (s.acquired, s.scene_id))
    return scenes


def find_scenes(cfg: SceneSourceConfig) -> tuple[list[SceneRef], list[SceneFailure]]:
    """All scenes of the source, with their native pixel size filled in."""
    from triplet_builder.geo import scene_geo

    files, failures = expand_paths(cfg.paths)
    described: list[_FileScene] = []
    for f in files:
        r = inspect_file(f, cfg)
        if isinstance(r, SceneFailure):
            log.warning("%s", r.message)
            failures.append(r)
        else:
            described.extend(r)
    scenes = []
    for s in group_scenes(described):
        try:
            px = scene_geo(s).native_pixel_size_m()
        except (ValueError, RuntimeError, OSError, RasterioError, ProjError) as e:  # the others go on
            failures.append(
                SceneFailure(s.bands[0].uri, "bad_georeferencing", f"{s.scene_id}: cannot georeference ({e})")
            )
            continue
        problem = _off_the_earth(s, px)
        if problem is not None:
            failures.append(SceneFailure(s.bands[0].uri, "bad_georeferencing", problem))
            continue
        scenes.append(dataclasses.replace(s, pixel_size_m=round(px, 3)))
    return scenes, failures


def _off_the_earth(s: SceneRef, pixel_size_m: float) -> str | None:
    """Why the scene's georeferencing cannot be right (corners beyond +-90 / 180 degrees, or a pixel of no
    size), or None: such a scene would otherwise be skipped as 'outside the region' without a word."""
    from triplet_builder.geo import scene_geo

    geo = scene_geo(s)
    rows = np.array([0.0, 0.0, s.height, s.height, s.height / 2])
    cols = np.array([0.0, s.width, 0.0, s.width, s.width / 2])
    try:
        lon, lat = geo.pixel_to_lonlat(rows, cols)
    except (ValueError, RuntimeError, OSError, RasterioError, ProjError) as e:
        return f"{s.bands[0].uri}: cannot georeference its corners ({e}): fix its CRS, GCPs or RPCs"
    if not (
        np.isfinite(lon).all()
        and np.isfinite(lat).all()
        and np.abs(lat).max() <= 90.0
        and np.abs(lon).max() <= 360.0
    ):
        return (
            f"{s.bands[0].uri}: its georeferencing puts corners off the Earth (lat {np.nanmin(lat):.2f}..{np.nanmax(lat):.2f}, "
            f"lon {np.nanmin(lon):.2f}..{np.nanmax(lon):.2f}): fix its CRS, GCPs or RPCs"
        )
    if not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        return (
            f"{s.bands[0].uri}: its pixels have no ground size ({pixel_size_m} m): fix its CRS, GCPs or RPCs"
        )
    return None
