"""The `landcover_fractions` stage: per chip, the share of each class of a user-supplied categorical raster
(any CRS, e.g. ESA WorldCover or a national land-cover map) over the chip, and per 3 x 3 cell.

Every chip pixel takes the raster's class under the pixel's centre (nearest neighbour: a categorical
raster is never averaged), whatever the georeferencing of the scene (affine, GCPs, RPCs) and the CRS of
the raster. The section it adds, `$.ext.landcover_fractions`, is described by section.schema.json.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyproj import Transformer

from schemas import frames
from triplet_builder.config import RegionPath
from triplet_builder.geo import scene_geo
from triplet_builder.record import ChipRecord
from triplet_builder.stages.annotation import AnnotationStage

DIGITS = 4  # fractions are rounded to 1e-4


class LandcoverConfig(BaseModel):
    """`config:` of the stage in a region file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raster: RegionPath = Field(description="A categorical GeoTIFF (integer classes, any CRS).")
    classes: dict[int, str] = Field(min_length=1, description="Raster value -> class name.")
    band: int = Field(1, ge=1, description="The band holding the classes.")

    @field_validator("classes")
    @classmethod
    def _names(cls, v: dict[int, str]) -> dict[int, str]:
        names = [n.strip() for n in v.values()]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError("class names must be non-empty and distinct")
        return dict(zip(v, names, strict=True))

    @field_validator("raster")
    @classmethod
    def _categorical(cls, v: str) -> str:
        if "://" in v or not Path(v).is_file():
            return v  # a missing local file is reported by RegionPath; remote files are read by GDAL
        try:
            with rasterio.open(v) as ds:
                dtype, crs = ds.dtypes[0], ds.crs
        except rasterio.RasterioIOError:
            raise ValueError(f"{Path(v).name} is not a raster GDAL can read: give a GeoTIFF") from None
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise ValueError(
                f"{Path(v).name} holds {dtype} values: a categorical raster holds integer classes"
            )
        if crs is None:
            raise ValueError(f"{Path(v).name} has no CRS: georeference it (e.g. gdal_edit.py -a_srs)")
        return v


class LandcoverFractions(AnnotationStage):
    name = "landcover_fractions"
    config_model = LandcoverConfig
    facts_schema = json.loads(resources.files(__package__).joinpath("section.schema.json").read_text())

    def __init__(self, config: BaseModel, region: Any) -> None:
        super().__init__(config, region)
        assert isinstance(config, LandcoverConfig)
        self.cfg = config
        self._ds: Any = None
        self._to_raster: Transformer | None = None

    def _open(self) -> Any:
        if self._ds is None:
            self._ds = rasterio.open(self.cfg.raster)
            self._to_raster = Transformer.from_crs("EPSG:4326", self._ds.crs, always_xy=True)
        return self._ds

    def classes_of(self, record: ChipRecord) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) raster values under the chip pixels' centres, and (H, W) whether each is covered
        (inside the raster and not nodata)."""
        ds = self._open()
        assert self._to_raster is not None
        w = record.window
        h_px, w_px = w.out_height, w.out_width
        yy, xx = np.meshgrid(
            (np.arange(h_px) + 0.5) / h_px, (np.arange(w_px) + 0.5) / w_px, indexing="ij"
        )  # (H, W) normalized pixel centres
        lon, lat = scene_geo(record.scene).chip_pixel_to_lonlat(w, yy, xx)
        x, y = self._to_raster.transform(lon, lat)
        inv = ~ds.transform
        cols = np.floor(inv.a * np.asarray(x) + inv.b * np.asarray(y) + inv.c).astype(np.int64)
        rows = np.floor(inv.d * np.asarray(x) + inv.e * np.asarray(y) + inv.f).astype(np.int64)
        inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
        values = np.zeros((h_px, w_px), dtype=np.int64)
        if inside.any():
            r0, r1 = int(rows[inside].min()), int(rows[inside].max()) + 1
            c0, c1 = int(cols[inside].min()), int(cols[inside].max()) + 1
            block = ds.read(self.cfg.band, window=((r0, r1), (c0, c1)))  # only the chip's part of the raster
            values[inside] = block[rows[inside] - r0, cols[inside] - c0]
        covered = inside if ds.nodata is None else inside & (values != ds.nodata)
        return values, covered

    def _shares(self, values: np.ndarray, covered: np.ndarray) -> dict[str, Any]:
        n, k = values.size, int(covered.sum())
        if k == 0:
            return {"covered_fraction": 0.0, "fractions": None, "unlisted_fraction": None, "dominant": None}
        codes, counts = np.unique(values[covered], return_counts=True)
        count = dict(zip(codes.tolist(), counts.tolist(), strict=True))
        listed = sum(count.get(c, 0) for c in self.cfg.classes)
        top = int(codes[np.argmax(counts)])  # the most frequent value (the smallest on a tie)
        return {
            "covered_fraction": round(k / n, DIGITS),
            "fractions": {name: round(count.get(c, 0) / k, DIGITS) for c, name in self.cfg.classes.items()},
            "unlisted_fraction": round((k - listed) / k, DIGITS),
            "dominant": self.cfg.classes.get(top),
        }

    def annotate(self, record: ChipRecord) -> dict[str, Any]:
        values, covered = self.classes_of(record)
        cells = frames.cell_index_map(*values.shape)  # (H, W) 1..9
        return {
            "raster": Path(self.cfg.raster).name,  # never the building machine's folders
            "pixels": int(values.size),
            **self._shares(values, covered),
            "cells": [
                {"cell": c, **self._shares(values[cells == c], covered[cells == c])} for c in range(1, 10)
            ],
        }

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None
