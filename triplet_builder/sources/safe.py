"""Sentinel-1 SAFE products (folder or .zip): metadata from manifest.safe and the annotation XML.

GDAL's SAFE driver refuses a product without measurement rasters; the metadata (acquisition time,
mission, mode, pass, polarisations, image size and the geolocation grid = GCPs) is read here from the
XML with the standard library, so annotation-only products are still described exactly.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from rasterio.control import GroundControlPoint

from triplet_builder.sources.names import MISSIONS, parse_name


class SafeError(ValueError):
    pass


@dataclass(frozen=True)
class SafeMetadata:
    product: str  # the product name (folder name without .SAFE)
    sensor: str
    mode: str
    orbit_direction: str
    start: datetime
    stop: datetime
    polarisations: tuple[str, ...]
    width: int  # numberOfSamples
    height: int  # numberOfLines
    gcps: tuple[GroundControlPoint, ...]  # from the first polarisation's annotation, EPSG:4326
    measurements: dict[str, str]  # polarisation -> GDAL path of the measurement GeoTIFF (may be empty)
    manifest: str = ""  # GDAL path of manifest.safe (for the SENTINEL1 driver's subdatasets)
    swath: str = ""  # the annotation's swath, e.g. "IW" for an IW GRD
    calibrations: dict[str, str] | None = None  # polarisation -> path of its calibration XML


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(root: ET.Element, name: str) -> str | None:
    for el in root.iter():
        if _local(el.tag) == name and el.text:
            return el.text.strip()
    return None


def read_safe(path: str | Path) -> SafeMetadata:
    """Parse a SAFE folder or zip. Raises SafeError naming the file and what is missing."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        zf = zipfile.ZipFile(path)
        names = zf.namelist()

        def read(n: str) -> bytes:
            return zf.read(n)

        def gdal_path(n: str) -> str:
            return f"/vsizip/{path}/{n}"
    else:
        safe_dir = path if path.is_dir() else path.parent  # the .SAFE folder (or manifest.safe inside it)
        root_dir = safe_dir.parent  # names then start with "X.SAFE/", as inside a zip
        names = [p.relative_to(root_dir).as_posix() for p in safe_dir.rglob("*") if p.is_file()]

        def read(n: str) -> bytes:
            return (root_dir / n).read_bytes()

        def gdal_path(n: str) -> str:
            return str(root_dir / n)

    manifest = [n for n in names if n.endswith("manifest.safe")]
    if not manifest:
        raise SafeError(f"{path}: no manifest.safe inside; is this a Sentinel-1 SAFE product?")
    m = ET.fromstring(read(manifest[0]))
    family = _find_text(m, "familyName") or ""
    number = _find_text(m, "number") or ""
    mission = "S1" + number if family.upper().startswith("SENTINEL-1") else ""
    sensor = MISSIONS.get(mission, f"{family} {number}".strip() or "unknown")
    mode = _find_text(m, "mode") or ""
    orbit = (_find_text(m, "pass") or "").lower()
    start_t = _find_text(m, "startTime")
    stop_t = _find_text(m, "stopTime")
    if start_t is None or stop_t is None:
        raise SafeError(f"{path}: manifest.safe has no startTime/stopTime")
    pols = tuple(
        el.text.strip().upper()
        for el in m.iter()
        if _local(el.tag) == "transmitterReceiverPolarisation" and el.text
    )
    annotations = sorted(
        n for n in names if "/annotation/" in n and n.endswith(".xml") and "/calibration/" not in n
    )
    if not annotations:
        raise SafeError(f"{path}: no annotation XML; the product is incomplete")
    ann = ET.fromstring(read(annotations[0]))
    width = int(_find_text(ann, "numberOfSamples") or 0)
    height = int(_find_text(ann, "numberOfLines") or 0)
    gcps: list[GroundControlPoint] = []
    for el in ann.iter():
        if _local(el.tag) != "geolocationGridPoint":
            continue
        f = {_local(c.tag): (c.text or "").strip() for c in el}
        gcps.append(
            GroundControlPoint(
                row=float(f["line"]),
                col=float(f["pixel"]),
                x=float(f["longitude"]),
                y=float(f["latitude"]),
                z=float(f.get("height", 0.0)),
            )
        )
    if not gcps:
        raise SafeError(f"{path}: the annotation has no geolocation grid points")
    calibrations: dict[str, str] = {}
    for n in names:
        if "/annotation/calibration/calibration-" in n and n.endswith(".xml"):
            info = parse_name(Path(n).name.removeprefix("calibration-"))
            if info is not None and info.polarisation:
                calibrations[info.polarisation] = gdal_path(n)
    measurements: dict[str, str] = {}
    for n in names:
        if "/measurement/" in n and n.lower().endswith((".tif", ".tiff")):
            info = parse_name(Path(n).name)
            if info is not None and info.polarisation:
                measurements[info.polarisation] = gdal_path(n)
    product = Path(manifest[0]).parent.name.removesuffix(".SAFE") or path.stem
    return SafeMetadata(
        product=product,
        sensor=sensor,
        mode=mode,
        orbit_direction=orbit,
        start=_ts(start_t),
        stop=_ts(stop_t),
        polarisations=pols,
        width=width,
        height=height,
        gcps=tuple(gcps),
        measurements=measurements,
        manifest=gdal_path(manifest[0]),
        swath=_find_text(ann, "swath") or mode,
        calibrations=calibrations,
    )
