"""The typed records that flow through the pipeline: a scene reference and a chip record.

A `SceneRef` is small and picklable: it is what travels to Dask workers (with the window specs).
A `ChipRecord` is created on the worker, filled stage by stage, and finally written as one row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np

from schemas.codec import EncodedChip, Scale, Stretch, encode_chip  # Scale: re-exported for the records


class Backscatter(str, Enum):
    """The radiometric normalisation of the backscatter."""

    SIGMA0 = "sigma0"
    GAMMA0 = "gamma0"
    BETA0 = "beta0"
    UNKNOWN = "unknown"


class GeorefKind(str, Enum):
    AFFINE = "affine"  # CRS + geotransform
    GCPS = "gcps"  # ground control points
    RPCS = "rpcs"  # rational polynomial coefficients


@dataclass(frozen=True, slots=True)
class BandRef:
    """One polarisation of a scene: which file and which 1-based band holds it."""

    uri: str
    band: int
    polarisation: str  # "VV", "VH", "HH", "HV" or "UNKNOWN"


@dataclass(frozen=True, slots=True)
class SceneRef:
    """Everything a worker needs to open a scene; no pixels."""

    scene_id: str
    bands: tuple[BandRef, ...]
    acquired: datetime  # UTC, timezone-aware
    acquired_source: str  # "filename", "tags", "sidecar", "safe-manifest"
    sensor: str  # e.g. "Sentinel-1A"
    mode: str | None  # e.g. "IW"
    orbit_direction: str | None  # "ascending" / "descending"
    scale: Scale
    scale_source: str  # "declared", "filename", "tags", "statistics"
    backscatter: Backscatter
    georef: GeorefKind
    crs: str | None  # native CRS (affine) or GCP CRS, as "EPSG:xxxx" or WKT
    width: int
    height: int
    pixel_size_m: float  # native, approximate for GCP/RPC scenes
    nodata: float | None
    product: str | None = None  # product type, e.g. "GRD", "RTC"
    # a virtual scene (no file, e.g. an Earth Engine image read on a grid): the affine (a, b, c, d, e, f)
    # of its pixel grid in `crs`; georeferencing then opens no file
    transform: tuple[float, float, float, float, float, float] | None = None
    # where the backscatter convention comes from: "declared" (region file, or whoever built the SceneRef),
    # "sidecar", "tags", "filename" (a product naming convention that states it), "safe-calibration",
    # "earthengine", or "none" when nothing states it (backscatter is then UNKNOWN)
    backscatter_source: str = "declared"

    @property
    def polarisations(self) -> tuple[str, ...]:
        return tuple(b.polarisation for b in self.bands)

    @property
    def year(self) -> int:
        return self.acquired.year

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.uri for b in self.bands))


@dataclass(frozen=True, slots=True)
class Window:
    """A chip window in native scene pixels (read area) and its output size in chip pixels."""

    col_off: int
    row_off: int
    width: int
    height: int
    out_width: int
    out_height: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.col_off, self.row_off, self.width, self.height)


def chip_id_for(scene_id: str, window: Window) -> str:
    """Deterministic chip id: SHA-256 of the scene id and the window, 16 hex digits."""
    key = f"{scene_id}|{window.col_off},{window.row_off},{window.width},{window.height}|{window.out_width}x{window.out_height}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Georef:
    """Where a chip is on Earth."""

    footprint_wkb: bytes  # polygon in lon/lat (OGC:CRS84), edges densified
    bbox: tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax) lon/lat
    centre_lon: float
    centre_lat: float
    native_crs: str | None
    transform: (
        tuple[float, float, float, float, float, float] | None
    )  # chip affine (a,b,c,d,e,f) in native CRS
    pixel_size_m: float  # of the chip (after resampling)
    grid_cell: str  # Major TOM 10 km cell, e.g. "433U_874R"
    utm_crs: str  # the UTM zone of the centre, e.g. "EPSG:32631"
    # ground size per axis in metres, geodesic (SceneGeo.window_ground_size_m): the georeference stage
    # always sets both; None only in records made by hand, which the fact sheet refuses
    width_m: float | None = None
    height_m: float | None = None


@dataclass(slots=True, eq=False)
class Anchors:
    """AlphaEarth anchors of a chip in the FUSAR-GPT `features` / `positions` form (stored quantized)."""

    codes: np.ndarray  # (S, 64) int8, the raw AlphaEarth codes; -128 where invalid
    valid: np.ndarray  # (S,) bool
    positions: np.ndarray  # (S, 2) float32, normalized image-local (y, x) in [0, 1]
    lonlat: np.ndarray  # (S, 2) float64
    year: int
    source: str  # provider description, e.g. "cog:data/demo/aef"
    synthetic: bool  # True for the demo's labelled synthetic stand-in

    def features(self) -> np.ndarray:
        """(S, 64) float32 de-quantized vectors (zeros where invalid)."""
        from triplet_builder.embeddings.quantize import dequantize

        return dequantize(self.codes)


@dataclass(slots=True, eq=False)
class ChipRecord:
    """One chip as it travels scene -> tile -> georeference -> embed -> screen -> facts -> text -> filter -> write."""

    chip_id: str
    scene: SceneRef
    window: Window
    task_id: int = 0
    # tile
    db: np.ndarray | None = None  # (P, H, W) float32 backscatter in dB, NaN where invalid
    valid: np.ndarray | None = None  # (H, W) bool
    # the chip's context for scene-window detection: `margin` more pixels on every side, NaN / False
    # beyond the scene; db and valid are its centre. Dropped by the facts stage once used.
    margin: int = 0
    context_db: np.ndarray | None = None  # (P, H + 2 margin, W + 2 margin) float32 dB
    context_valid: np.ndarray | None = None  # (H + 2 margin, W + 2 margin) bool
    # georeference
    georef: Georef | None = None
    # embed
    anchors: Anchors | None = None
    # facts: the only source of truth for text (a JSON-serialisable dict, see schemas/facts.schema.json)
    facts: dict[str, Any] | None = None
    # text
    caption: str | None = None
    caption_fields: dict[str, str | None] | None = None
    qa: list[dict[str, str]] = field(default_factory=list)  # [{task, question, answer}]
    text_generator: str | None = None
    prompt_version: str | None = None
    # filter
    reject_stage: str | None = None
    reject_reason: str | None = None
    reject_detail: str | None = None
    # bookkeeping
    split: str | None = None
    # the chip's PNG, encoded once (see `encoded`): (stretch, db, valid it was made from, the encoding)
    _encoded: tuple[Stretch, np.ndarray, np.ndarray, EncodedChip] | None = None

    @property
    def rejected(self) -> bool:
        return self.reject_reason is not None

    def encoded(self, stretch: Stretch) -> EncodedChip:
        """The chip's PNG under `stretch`, encoded once per record: the text stage's vision path and the
        writer share it (a PNG costs about as much as the rest of a row). Encoded again only when the
        stretch differs or a stage has replaced `db` / `valid` since."""
        assert self.db is not None and self.valid is not None
        c = self._encoded
        if c is not None and c[0] == stretch and c[1] is self.db and c[2] is self.valid:
            return c[3]
        enc = encode_chip(self.db, self.valid, self.scene.polarisations, stretch)
        self._encoded = (stretch, self.db, self.valid, enc)
        return enc

    def reject(self, stage: str, reason: str, detail: str = "") -> ChipRecord:
        self.reject_stage = stage
        self.reject_reason = reason
        self.reject_detail = detail
        return self
