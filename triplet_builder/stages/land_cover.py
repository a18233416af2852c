"""The built-in `land_cover` stage: the land cover of each chip from ESA WorldCover 10 m or Google Dynamic
World, as the fact section `$.ext.land_cover` (schemas/facts_ext/land_cover.schema.json).

Every chip pixel takes the map's class under the pixel's centre (nearest neighbour on the chip's OWN output
grid, whatever the scene's georeferencing); fractions are shares of the chip's valid map pixels, per chip and
per 3 x 3 cell (schemas/frames.py). Where the map has no value (no tile: open sea for WorldCover; masked;
outside the raster) the pixel is invalid: `valid_fraction` says how much the map covers, and a chip the map
does not cover at all states no class (dominant null), never "water".

The pixel centres of a whole batch are read in one call per map year / date window, so the source groups
them by tile and window (triplet_builder/sources/worldcover.py) or into few computePixels grids
(triplet_builder/sources/land_cover_ee.py), never one request per chip. For the tiles and a local raster the
map pixel under each centre comes from a few hundred exactly projected centres per chip, the same pixels as
projecting all of them (triplet_builder/sources/map_pixels.py); Earth Engine is given every centre.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

import schemas
from schemas import frames
from schemas.vocabulary import LAND_COVER_PRODUCTS, WORLDCOVER_VERSIONS
from triplet_builder.geo import scene_geo
from triplet_builder.record import ChipRecord
from triplet_builder.sources.map_pixels import chip_map_index
from triplet_builder.sources.worldcover import DEFAULT_URL, MapMissingError, map_year
from triplet_builder.stages.annotation import AnnotationStage
from triplet_builder.stages.base import StageStats

logger = logging.getLogger(__name__)

DIGITS = 4  # fractions are rounded to 1e-4
_LOGGED: set[str] = set()  # skip messages already logged by this process (one line per build, not per chip)


class LandCoverConfig(BaseModel):
    """`config:` of the `land_cover` stage in a region file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: Literal["esa-worldcover", "dynamic-world"] = "esa-worldcover"
    source: Literal["cog", "earthengine", "local"] = "cog"
    year: Literal[2020, 2021, "nearest"] = Field(
        "nearest", description="WorldCover map year; nearest = the one closest to the acquisition year."
    )
    url: str = Field(DEFAULT_URL, description="cog: the product's bucket over https (or s3://), or a mirror.")
    path: str | None = Field(
        None, description="local: a raster file, or a folder in the WorldCover tile layout."
    )
    missing: Literal["error", "skip"] = "error"
    days: int = Field(30, ge=0, le=366, description="Dynamic World: days before and after the acquisition.")

    @field_validator("path")
    @classmethod
    def _resolve(cls, v: str | None, info: ValidationInfo) -> str | None:
        base = (info.context or {}).get("base_dir")
        if v is None or base is None or Path(v).is_absolute():
            return v
        return str(Path(base) / v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://", "s3://")):
            raise ValueError(f"{v!r} is not an https://, http:// or s3:// URL of the WorldCover layout")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> LandCoverConfig:
        if self.product == "dynamic-world" and self.source != "earthengine":
            raise ValueError("product dynamic-world is read from Earth Engine only: set source: earthengine")
        if self.source == "local":
            if self.path is None:
                raise ValueError(
                    "source local needs path: a WorldCover raster or a folder in its tile layout"
                )
            loading = (info.context or {}).get("base_dir") is not None
            if loading and self.missing == "error" and not Path(self.path).exists():
                raise ValueError(
                    f"path {Path(self.path).name} not found (a relative path is read from the region file's "
                    f"folder): download the map from {DEFAULT_URL}, or set missing: skip"
                )
        elif self.path is not None:
            raise ValueError(f"path is read by source local only (source is {self.source})")
        return self


def shares(counts: np.ndarray, n: int, legend: dict[int, str]) -> dict[str, Any]:
    """valid_fraction, fractions (classes present, of the valid pixels) and dominant of an area of `n`
    pixels whose valid ones count `counts[code]` of each class code."""
    per_code = counts.tolist()
    k = sum(per_code)
    if n == 0 or k == 0:
        return {"valid_fraction": 0.0, "fractions": {}, "dominant": None}
    codes = [c for c, m in enumerate(per_code) if m]  # ascending: max() keeps the lower code on a tie
    return {
        "valid_fraction": round(k / n, DIGITS),
        "fractions": {legend[c]: round(per_code[c] / k, DIGITS) for c in codes},
        "dominant": legend[max(codes, key=per_code.__getitem__)],
    }


def section_of(values: np.ndarray, valid: np.ndarray, legend: dict[int, str]) -> dict[str, Any]:
    """The chip-level and per-cell shares of an (H, W) class map (valid pixels hold codes of `legend`)."""
    cells = frames.cell_index_map(*values.shape).astype(np.int64)  # (H, W) 1..9
    size = max(legend) + 1
    codes = values[valid].astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"land_cover: class {codes.max()} is not in the map's legend")
    counts = np.bincount(cells[valid] * size + codes, minlength=10 * size).reshape(10, size)
    pixels = np.bincount(cells.ravel(), minlength=10)
    return {
        **shares(counts.sum(axis=0), values.size, legend),
        "cells": [{"cell": c, **shares(counts[c], int(pixels[c]), legend)} for c in range(1, 10)],
    }


def _centres(recs: list[ChipRecord]) -> tuple[np.ndarray, np.ndarray]:
    """lon, lat of every output pixel centre of `recs` (nearest neighbour on each chip's own grid)."""
    lons, lats = [], []
    for r in recs:
        h, w = r.window.out_height, r.window.out_width
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        lon, lat = scene_geo(r.scene).chip_pixel_to_lonlat(r.window, yy.ravel(), xx.ravel())
        lons.append(np.asarray(lon, dtype=np.float64))
        lats.append(np.asarray(lat, dtype=np.float64))
    return np.concatenate(lons), np.concatenate(lats)


class LandCover(AnnotationStage):
    """Adds `$.ext.land_cover`; see the module docstring and README (Land cover)."""

    name = "land_cover"
    config_model = LandCoverConfig
    needs = ("acquisition",)
    facts_schema: ClassVar[dict[str, Any]] = schemas.json_schema("facts_ext/land_cover")

    def __init__(self, config: BaseModel, region: Any) -> None:
        super().__init__(config, region)
        assert isinstance(config, LandCoverConfig)
        self.cfg = config
        self.legend = dict(LAND_COVER_PRODUCTS[config.product])
        self._source: Any = None

    # ----------------------------------------------------------------------------------------- source
    def source(self) -> Any:
        if self._source is None:
            cfg, cache = self.cfg, self.region.cache_root() / "land_cover"
            if cfg.source == "earthengine":
                from triplet_builder.earthengine import ClientSettings
                from triplet_builder.sources.land_cover_ee import EarthEngineLandCover

                settings = ClientSettings.from_config(self.region.earthengine, self.region.cache_root())
                self._source = EarthEngineLandCover(settings)
            else:
                from triplet_builder.sources.worldcover import LocalMap, WorldCoverTiles

                root = cfg.url if cfg.source == "cog" else str(cfg.path)
                if cfg.source == "local" and not Path(root).exists():
                    raise MapMissingError(
                        f"land-cover path {Path(root).name} not found: download the map from {DEFAULT_URL}"
                    )
                if cfg.source == "local" and Path(root).is_file():
                    self._source = LocalMap(root)
                else:
                    self._source = WorldCoverTiles(root, cache_dir=str(cache))
        return self._source

    def _groups(self, records: list[ChipRecord]) -> dict[tuple[Any, ...], list[ChipRecord]]:
        """Chips read together: by WorldCover map year, or by Dynamic World date window."""
        out: dict[tuple[Any, ...], list[ChipRecord]] = {}
        for r in records:
            if self.cfg.product == "esa-worldcover":
                key: tuple[Any, ...] = (map_year(self.cfg.year, r.scene.year),)
            else:
                day = r.scene.acquired.date()
                key = (day - timedelta(days=self.cfg.days), day + timedelta(days=self.cfg.days))
            out.setdefault(key, []).append(r)
        return out

    def _read(self, key: tuple[Any, ...], recs: list[ChipRecord], st: StageStats) -> list[tuple[Any, Any]]:
        """Values and validity of each chip's output pixels (row-major), chip by chip."""
        from triplet_builder.earthengine import EarthEngineSetupError

        src = self.source()
        if self.cfg.source == "earthengine":
            lon, lat = _centres(recs)
            try:
                values, valid = self._read_ee(src, key, lon, lat)
            except EarthEngineSetupError as e:  # no project / credentials: the source has nothing to give
                raise MapMissingError(str(e)) from None
            cuts = np.cumsum([r.window.out_height * r.window.out_width for r in recs])[:-1]
            return list(zip(np.split(values, cuts), np.split(valid, cuts), strict=True))
        # the map pixel under each centre, projecting few of them (triplet_builder/sources/map_pixels.py)
        parts = []
        for r in recs:
            pixels, projected = chip_map_index(scene_geo(r.scene), r.window, src.pixel_coords)
            parts.append(pixels)
            st.extra["centres_projected"] += projected
        return src.read_pixels(parts, key[0])  # type: ignore[no-any-return]

    def _read_ee(
        self, src: Any, key: tuple[Any, ...], lon: np.ndarray, lat: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        from triplet_builder.sources import land_cover_ee as lee

        if self.cfg.product == "esa-worldcover":
            image = lee.worldcover_image(WORLDCOVER_VERSIONS[key[0]])
            return src.sample(lon, lat, image, lee.worldcover_lattice)  # type: ignore[no-any-return]
        start, last = key
        image = lee.dynamic_world_image(start.isoformat(), (last + timedelta(days=1)).isoformat())
        return src.sample(lon, lat, image, lee.utm_lattice)  # type: ignore[no-any-return]

    def _header(self, key: tuple[Any, ...]) -> dict[str, Any]:
        if self.cfg.product == "esa-worldcover":
            return {"product": self.cfg.product, "version": WORLDCOVER_VERSIONS[key[0]], "year": key[0]}
        return {
            "product": self.cfg.product,
            "version": None,
            "year": None,
            "date_range": [key[0].isoformat(), key[1].isoformat()],
        }

    # ------------------------------------------------------------------------------------------ batch
    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        for key, recs in self._groups(records).items():
            try:
                read = self._read(key, recs, st)
            except MapMissingError as e:
                if self.cfg.missing == "error":
                    raise MapMissingError(f"stage land_cover: {e} (or set missing: skip)") from None
                self._skip(str(e), len(recs), st)
                continue
            if key and isinstance(key[0], int):
                st.extra[f"chips_map_{key[0]}"] += len(recs)
                for r in recs:
                    st.extra[f"chips_year_gap_{abs(key[0] - r.scene.year)}"] += 1
            for r, (values, valid) in zip(recs, read, strict=True):
                known = np.isin(values, list(self.legend))
                st.extra["pixels_unknown_value"] += int((valid & ~known).sum())  # not in the legend: no class
                shape = (r.window.out_height, r.window.out_width)
                v, ok = values.reshape(shape), (valid & known).reshape(shape)
                section = {**self._header(key), "source": self.cfg.source, **section_of(v, ok, self.legend)}
                if not ok.any():
                    st.extra["chips_without_map_pixels"] += 1
                self.add_section(r, section)
                st.extra["chips_annotated"] += 1  # the card credits the map only when a chip used it
        drain = getattr(self._source, "drain_counters", None)
        if drain is not None:
            st.extra.update(drain())
        for k, v in (getattr(self._source, "stats", None) or {}).items():
            st.extra[f"source_{k}"] = v  # cumulative per task: the last batch's value is the task's total

    def _skip(self, message: str, n: int, st: StageStats) -> None:
        st.extra["chips_skipped_missing_map"] += n
        if message not in _LOGGED:
            _LOGGED.add(message)
            logger.warning("land_cover: %s; missing: skip, so these chips get no land_cover section", message)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
