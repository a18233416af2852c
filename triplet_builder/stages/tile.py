"""Tile stage: read each chip window of a scene (window by window, never the whole scene), resample to
the target pixel size, convert to dB in the one radiometry function, and drop chips that are mostly nodata.

Before it reads a window, the stage asks its `guard` (in a build, the georeference stage's `locate`)
whether the chip would be rejected once placed: a chip straddling blocks of different splits
(`split_guard`) or with a footprint that cannot be placed is rejected here, unread. A window of a remote
scene is a paid request, and a quarter or more of a region's windows can straddle splits.

With `margin` > 0 each window is read with that many more output pixels on every side (clipped at the
scene edge, where the margin is nodata): the chip's context, on which the facts stage detects targets.
The chip itself (db, valid) is the centre of the context; the nodata test looks at the chip only. At
native resolution the context holds exactly the scene's pixels; when resampling, the margin is rounded
to whole native pixels and GDAL's averages may differ from a chip read alone by float32 rounding.

Scenes whose bands are `ee://` URIs (virtual Earth Engine scenes) are read through
triplet_builder.sources.earthengine: up to `prefetch` windows are kept in flight (bounded concurrency)
ahead of the one being processed, in order like local ones; the request counters land in the stage's
statistics (`ee_requests`, `ee_cache_hits`, ...).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from schemas.codec import to_db
from triplet_builder.record import ChipRecord, Window
from triplet_builder.remote import REJECT_SCENE_UNAVAILABLE, ServiceUnavailable, backoff_delay
from triplet_builder.sources.s1_calibration import CalibratedBandRef, read_calibrated
from triplet_builder.stages.base import Stage, Stats

EE_SCHEME = "ee://"
# a window of a remote GDAL path (/vsicurl/, /vsis3/, ...) that fails to read (a reset, a truncated or
# garbled block: GDAL itself retries only 429 / 5xx) is read again from a fresh handle this many times
REMOTE_READ_ATTEMPTS = 4
REMOTE_READ_BACKOFF_S = 0.2


class ReadChips(Stage):
    name = "tile"

    def __init__(
        self,
        max_nodata_fraction: float = 0.5,
        *,
        prefetch: int = 64,
        margin: int = 0,
        guard: Callable[[ChipRecord], tuple[str, str] | None] | None = None,
    ) -> None:
        if margin < 0:
            raise ValueError(f"ReadChips: margin must be >= 0, got {margin}")
        self.max_nodata_fraction = max_nodata_fraction
        # a cheap check of the window before its pixels are read: (reason, detail) rejects the chip unread
        # (the georeference stage's `locate`: chips straddling splits, footprints it cannot place)
        self.guard = guard
        self.margin = margin  # context pixels read on every side of the chip (output pixels)
        self.prefetch = prefetch  # windows of a remote (ee://) scene kept in flight ahead of processing
        self._open: dict[str, Any] = {}
        self._readers: dict[Any, Any] = {}  # Earth Engine settings -> window reader
        self._fetched: dict[str, np.ndarray] = {}  # chip id -> (P, H, W) raw values of a prefetched window
        self._unavailable: dict[str, str] = {}  # chip id -> why its prefetch failed for good
        self._verdicts: dict[str, tuple[str, str] | None] = {}  # chip id -> the guard's answer, asked ahead

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
                try:
                    self._fetched[rec.chip_id] = self._reader(rec).values(rec.scene, fut.result())
                except ServiceUnavailable as e:
                    self._unavailable[rec.chip_id] = str(e).splitlines()[0]
                stats[self.name].seconds += time.perf_counter() - t0  # waiting for the fetch is tile time
            yield from super(ReadChips, self).run([rec], stats)

        for rec in records:
            fut = None
            if not rec.rejected:
                why = self._verdicts[rec.chip_id] = self._ask_guard(rec)  # kept for `process`
                if why is None:
                    fut = self._reader(rec).submit(rec.scene, self._padded(rec)[0])
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

    def _padded(self, record: ChipRecord) -> tuple[Window, tuple[slice, slice]]:
        """(the native window to read: the chip's window plus the margin, clipped to the scene;
        where its pixels go in the (H + 2m, W + 2m) context). Margin 0: the chip's own window."""
        w, scene, m = record.window, record.scene, self.margin
        if m == 0:
            return w, (slice(0, w.out_height), slice(0, w.out_width))
        fx, fy = w.width / w.out_width, w.height / w.out_height  # native pixels per output pixel
        mx, my = round(m * fx), round(m * fy)
        c0, c1 = w.col_off - mx, w.col_off + w.width + mx
        r0, r1 = w.row_off - my, w.row_off + w.height + my
        cc0, cc1, rr0, rr1 = max(c0, 0), min(c1, scene.width), max(r0, 0), min(r1, scene.height)
        ox0, ox1 = round((cc0 - c0) / fx), w.out_width + 2 * m - round((c1 - cc1) / fx)
        oy0, oy1 = round((rr0 - r0) / fy), w.out_height + 2 * m - round((r1 - rr1) / fy)
        read = Window(cc0, rr0, cc1 - cc0, rr1 - rr0, ox1 - ox0, oy1 - oy0)
        return read, (slice(oy0, oy1), slice(ox0, ox1))

    def _read(self, record: ChipRecord) -> np.ndarray:
        """(P, H + 2m, W + 2m) float32 raw values of the chip's context, NaN where nodata or beyond the
        scene ((P, H, W) of the chip alone when the margin is 0)."""
        w, m = record.window, self.margin
        read, (ys, xs) = self._padded(record)
        raw = self._fetched.pop(record.chip_id, None)
        if record.chip_id in self._unavailable:
            raise ServiceUnavailable(self._unavailable.pop(record.chip_id))
        if raw is None:
            raw = self._read_window_retrying(record, read)
        if m == 0:
            return raw
        out = np.full((raw.shape[0], w.out_height + 2 * m, w.out_width + 2 * m), np.nan, dtype=np.float32)
        out[:, ys, xs] = raw
        return out

    def _read_window_retrying(self, record: ChipRecord, w: Window) -> np.ndarray:
        """`_read_window`, for remote GDAL paths again from fresh handles after a failed read; a window
        that never reads raises ServiceUnavailable (the chip is rejected, the task goes on)."""
        if not any(b.uri.startswith("/vsi") for b in record.scene.bands):
            return self._read_window(record, w)
        for attempt in range(REMOTE_READ_ATTEMPTS):
            try:
                return self._read_window(record, w)
            except (RasterioError, CPLE_BaseError) as e:
                error = str(e).splitlines()[0] if str(e) else type(e).__name__
                for b in record.scene.bands:  # a failed handle may hold a half-read block: drop it
                    ds = self._open.pop(b.uri, None)
                    if ds is not None:
                        ds.close()
                if attempt + 1 < REMOTE_READ_ATTEMPTS:
                    time.sleep(backoff_delay(attempt, REMOTE_READ_BACKOFF_S, 5.0))
        raise ServiceUnavailable(
            f"window {w.col_off},{w.row_off} of {record.scene.uris[0]} unreadable after "
            f"{REMOTE_READ_ATTEMPTS} attempts: {error}"
        )

    def _read_window(self, record: ChipRecord, w: Window) -> np.ndarray:
        """(P, out_height, out_width) float32 raw values of a native window, NaN where nodata."""
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

    def _ask_guard(self, record: ChipRecord) -> tuple[str, str] | None:
        return None if self.guard is None else self.guard(record)

    def process(self, record: ChipRecord) -> ChipRecord:
        scene, w, m = record.scene, record.window, self.margin
        asked = record.chip_id in self._verdicts  # a remote scene's chips: asked before their prefetch
        why = self._verdicts.pop(record.chip_id) if asked else self._ask_guard(record)
        if why is not None:  # never read: the chip would be rejected once placed
            return record.reject(self.name, *why)
        try:
            raw = self._read(record)
        except ServiceUnavailable as e:  # every retry spent: rejected with the reason, the task goes on
            return record.reject(self.name, REJECT_SCENE_UNAVAILABLE, str(e).splitlines()[0])
        db, valid = to_db(raw, scene.scale, scene.nodata)
        if m:
            record.margin, record.context_db, record.context_valid = m, db, valid
            db = np.ascontiguousarray(db[:, m : m + w.out_height, m : m + w.out_width])
            valid = np.ascontiguousarray(valid[m : m + w.out_height, m : m + w.out_width])
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
        self._unavailable.clear()
        self._verdicts.clear()
