"""Tile stage: read each chip window of a scene (window by window, never the whole scene), resample to
the target pixel size, convert to dB in the one radiometry function, and drop chips that are mostly nodata.

Scenes whose bands are `ee://` URIs (virtual Earth Engine scenes) are read through
triplet_builder.sources.earthengine: up to `prefetch` windows are kept in flight (bounded concurrency)
ahead of the one being processed, in order like local ones; the request counters land in the stage's
statistics (`ee_requests`, `ee_cache_hits`, ...).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window as RioWindow

from triplet_builder.radiometry import to_db
from triplet_builder.record import ChipRecord
from triplet_builder.sources.s1_calibration import CalibratedBandRef, read_calibrated
from triplet_builder.stages.base import Stage, Stats

EE_SCHEME = "ee://"


class ReadChips(Stage):
    name = "tile"

    def __init__(self, max_nodata_fraction: float = 0.5, *, prefetch: int = 64) -> None:
        self.max_nodata_fraction = max_nodata_fraction
        self.prefetch = prefetch  # windows of a remote (ee://) scene kept in flight ahead of processing
        self._open: dict[str, Any] = {}
        self._readers: dict[Any, Any] = {}  # Earth Engine settings -> window reader
        self._fetched: dict[str, np.ndarray] = {}  # chip id -> (P, H, W) raw values of a prefetched window

    def _ds(self, uri: str) -> Any:
        if uri not in self._open:
            if uri.startswith("/vsi"):
                # remote scenes (e.g. STAC assets): our User-Agent, no directory listing or sidecar probes
                from triplet_builder.remote import gdal_env

                with gdal_env():
                    self._open[uri] = rasterio.open(uri)
            else:
                self._open[uri] = rasterio.open(uri)
        return self._open[uri]

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        it = iter(records)
        first = next(it, None)
        if first is None:
            return
        it = itertools.chain([first], it)
        if not first.scene.bands[0].uri.startswith(EE_SCHEME):  # local / GDAL path: unchanged
            yield from super().run(it, stats)
            return
        yield from self._run_remote(it, stats)

    def _run_remote(self, records: Iterator[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        """Keep up to `prefetch` windows in flight ahead of the record being processed, so the request
        pool never idles while chips are converted (and rejected records pass straight through)."""
        pending: deque[tuple[ChipRecord, Future[np.ndarray] | None]] = deque()

        def emit() -> Iterator[ChipRecord]:
            rec, fut = pending.popleft()
            if fut is not None:
                t0 = time.perf_counter()
                self._fetched[rec.chip_id] = self._reader(rec).values(rec.scene, fut.result())
                stats[self.name].seconds += time.perf_counter() - t0  # waiting for the fetch is tile time
            yield from super(ReadChips, self).run([rec], stats)

        for rec in records:
            fut = None if rec.rejected else self._reader(rec).submit(rec.scene, rec.window)
            pending.append((rec, fut))
            if len(pending) >= self.prefetch:
                yield from emit()
        while pending:
            yield from emit()
        for reader in self._readers.values():
            stats[self.name].extra.update(reader.drain_counters())

    def _reader(self, record: ChipRecord) -> Any:
        """The Earth Engine window reader for the settings the scene's bands carry (one per settings)."""
        settings = getattr(record.scene.bands[0], "settings", None)
        if settings is None:
            raise ValueError(f"scene {record.scene.scene_id}: ee:// bands need EarthEngineBandRef settings")
        reader = self._readers.get(settings)
        if reader is None:
            from triplet_builder.sources.earthengine import EarthEngineWindowReader

            reader = self._readers[settings] = EarthEngineWindowReader(settings)
        return reader

    def _read(self, record: ChipRecord) -> np.ndarray:
        """(P, H, W) float32 raw values of the chip, NaN where nodata."""
        fetched = self._fetched.pop(record.chip_id, None)
        if fetched is not None:
            return fetched
        w = record.window
        rw = RioWindow(w.col_off, w.row_off, w.width, w.height)
        resample = (w.out_width, w.out_height) != (w.width, w.height)
        planes = []
        for band in record.scene.bands:
            ds = self._ds(band.uri)
            if isinstance(band, CalibratedBandRef):  # SAFE GRD digital numbers -> sigma0
                planes.append(read_calibrated(ds, band, w))
                continue
            arr = ds.read(
                band.band,
                window=rw,
                out_shape=(w.out_height, w.out_width),
                resampling=Resampling.average if resample else Resampling.nearest,
                masked=True,
            )  # (H, W) masked where nodata
            planes.append(np.ma.filled(arr.astype(np.float32), np.nan))
        return np.stack(planes)  # (P, H, W)

    def process(self, record: ChipRecord) -> ChipRecord:
        scene = record.scene
        raw = self._read(record)
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
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._fetched.clear()
