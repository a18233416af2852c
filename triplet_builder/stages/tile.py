"""Tile stage: read each chip window of a scene (window by window, never the whole scene), resample to
the target pixel size, convert to dB in the one radiometry function, and drop chips that are mostly nodata."""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window as RioWindow

from triplet_builder.radiometry import to_db
from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage


class ReadChips(Stage):
    name = "tile"

    def __init__(self, max_nodata_fraction: float = 0.5) -> None:
        self.max_nodata_fraction = max_nodata_fraction
        self._open: dict[str, Any] = {}

    def _ds(self, uri: str) -> Any:
        if uri not in self._open:
            self._open[uri] = rasterio.open(uri)
        return self._open[uri]

    def process(self, record: ChipRecord) -> ChipRecord:
        w = record.window
        scene = record.scene
        rw = RioWindow(w.col_off, w.row_off, w.width, w.height)
        resample = (w.out_width, w.out_height) != (w.width, w.height)
        planes = []
        for band in scene.bands:
            ds = self._ds(band.uri)
            arr = ds.read(
                band.band,
                window=rw,
                out_shape=(w.out_height, w.out_width),
                resampling=Resampling.average if resample else Resampling.nearest,
                masked=True,
            )  # (H, W) masked where nodata
            planes.append(np.ma.filled(arr.astype(np.float32), np.nan))
        raw = np.stack(planes)  # (P, H, W)
        db, valid = to_db(raw, scene.scale, scene.nodata)
        record.db, record.valid = db, valid
        nodata_fraction = 1.0 - float(valid.mean())
        if nodata_fraction > self.max_nodata_fraction:
            record.reject(self.name, "nodata", f"{nodata_fraction:.0%} of the chip is nodata")
        return record

    def close(self) -> None:
        for ds in self._open.values():
            ds.close()
        self._open.clear()
