"""Running computePixels requests: `ComputePixelsRunner` plans each request into pieces within the limits,
answers from the on-disk cache, else fetches with bounded concurrency, bounded jittered retries and a split
in two when the server says too large, then decodes the NPY answers and stitches the pieces back;
`band_stack` turns an answer into float32 values and a validity mask."""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triplet_builder.cache import DiskCache, default_cache_root
from triplet_builder.earthengine.credentials import ClientSettings, initialize
from triplet_builder.earthengine.errors import (
    EarthEngineError,
    RequestTooLargeError,
    ServiceUnavailable,
    TransientError,
    _credentials_refused,
    _first_line,
    classify,
)
from triplet_builder.earthengine.recipes import (
    FILE_FORMAT,
    MAX_GRID_SIDE,
    MAX_REQUEST_BYTES,
    Grid,
    PixelRequest,
)
from triplet_builder.remote import backoff_delay

# the package's logger: its records keep the name `triplet_builder.earthengine`
logger = logging.getLogger("triplet_builder.earthengine")


# ---------------------------------------------------------------------------------------------- cache
PixelCache = DiskCache  # responses of computePixels, one entry per request hash


def default_cache_dir() -> Path:
    return default_cache_root() / "earthengine"


# --------------------------------------------------------------------------------------------- runner
@dataclass
class _Leaf:
    row_off: int
    col_off: int
    request: PixelRequest


@dataclass
class _Job:
    request: PixelRequest
    leaves: list[_Leaf] = field(default_factory=list)


class ComputePixelsRunner:
    """Runs `PixelRequest`s: cache, then computePixels with bounded concurrency, retries and splitting.

    `fetch_many` returns, per request, a structured array (H, W) with one field per band. Counters
    (`requests`, `retries`, `bytes`, `cache_hits`, `splits`, ...) accumulate in `counters`; `drain()`
    hands them over for a stage's statistics. Picklable: the thread pool, the cache handle and the
    client state are made lazily in each process.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        credentials: Any = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_side: int = MAX_GRID_SIDE,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials  # tests inject one; never pickled
        self.max_request_bytes = int(max_request_bytes)
        self.max_side = int(max_side)
        self.seed = seed
        self.counters: Counter[str] = Counter()
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        # at most max_concurrent requests in flight; the pool has twice as many threads so decoding,
        # caching and backoff sleeps happen outside a slot and the next request starts at once
        self._slots = threading.BoundedSemaphore(self.settings.max_concurrent)
        self._rng = random.Random(self.seed)
        root = self.settings.cache_dir
        self.cache = PixelCache(root if root is not None else default_cache_dir())

    def __getstate__(self) -> dict[str, Any]:
        keep = ("settings", "max_request_bytes", "max_side", "seed", "counters")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.counters = Counter(self.counters)
        self.credentials = None
        self._init_runtime()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def drain(self) -> dict[str, int]:
        """The counters since the last drain (then reset), for a stage's Stats.extra."""
        with self._lock:
            out = dict(self.counters)
            self.counters.clear()
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=2 * self.settings.max_concurrent, thread_name_prefix="ee-pixels"
                )
            return self._pool

    # --------------------------------------------------------------------------------- planning
    def _plan(self, request: PixelRequest, row_off: int = 0, col_off: int = 0) -> list[_Leaf]:
        """Cut a request into leaves that fit the limits (before any call: size errors are predictable)."""
        if request.fits(self.max_request_bytes, self.max_side) or (
            request.grid.width == 1 and request.grid.height == 1
        ):
            return [_Leaf(row_off, col_off, request)]
        self._count("planned_splits")
        (r0, c0, a), (r1, c1, b) = request.halves()
        return self._plan(a, row_off + r0, col_off + c0) + self._plan(b, row_off + r1, col_off + c1)

    # ---------------------------------------------------------------------------------- running
    def fetch_many(self, requests: Sequence[PixelRequest]) -> list[np.ndarray]:
        """The pixels of every request (structured (H, W) arrays, one field per band), fetched in parallel."""
        jobs = [_Job(r, self._plan(r)) for r in requests]
        leaves = [leaf for job in jobs for leaf in job.leaves]
        if len(leaves) == 1:
            parts = [self._fetch_leaf(leaves[0].request)]
        else:
            parts = list(self._executor().map(lambda lf: self._fetch_leaf(lf.request), leaves))
        out: list[np.ndarray] = []
        i = 0
        for job in jobs:
            n = len(job.leaves)
            out.append(_stitch(job.request.grid, job.leaves, parts[i : i + n]))
            i += n
        return out

    def fetch(self, request: PixelRequest) -> np.ndarray:
        return self.fetch_many([request])[0]

    def submit(self, request: PixelRequest) -> Future[np.ndarray]:
        """Start one request on the pool and return at once (to keep the pool busy while results are
        consumed). A request over the limits is fetched leaf after leaf inside its one task."""
        leaves = self._plan(request)
        if len(leaves) == 1:
            return self._executor().submit(self._fetch_leaf, request)
        return self._executor().submit(
            lambda: _stitch(request.grid, leaves, [self._fetch_leaf(lf.request) for lf in leaves])
        )

    def _fetch_leaf(self, request: PixelRequest) -> np.ndarray:
        """One request: from the cache, or fetched (with retries); split in two if the server says too large."""
        key = request.cache_key()
        payload = self.cache.get(key)
        if payload is not None:
            arr = _decode(payload, request)
            if arr is not None:
                self._count("cache_hits")
                return arr
            self.cache.path(key).unlink(missing_ok=True)
        try:
            payload, arr = self._call_with_retries(request)
        except RequestTooLargeError:
            if request.grid.width * request.grid.height <= 1:
                raise
            self._count("splits")
            (r0, c0, a), (r1, c1, b) = request.halves()
            leaves = [_Leaf(r0, c0, a), _Leaf(r1, c1, b)]
            return _stitch(request.grid, leaves, [self._fetch_leaf(a), self._fetch_leaf(b)])
        self.cache.put(key, payload)
        return arr

    def _call_with_retries(self, request: PixelRequest) -> tuple[bytes, np.ndarray]:
        """(payload, decoded array); an answer that is not the grid's NPY array (a garbled or truncated
        body) is retried like any transient error, and never cached."""
        s = self.settings
        attempt = 0
        while True:
            try:
                payload = self._call(request)
                arr = _decode(payload, request)
                if arr is None:
                    self._count("errors_garbled")
                    raise TransientError(
                        f"the answer to a {request.grid.width}x{request.grid.height} computePixels request "
                        f"is not that grid's NPY array ({len(payload)} bytes)"
                    )
                return payload, arr
            except TransientError as e:
                if attempt >= s.max_retries:
                    self._count("failed")
                    raise ServiceUnavailable(
                        f"Earth Engine computePixels failed after {attempt + 1} attempts: {e}; "
                        "lower earthengine.max_concurrent or raise earthengine.max_retries / timeout_s"
                    ) from None
                with self._lock:
                    delay = backoff_delay(attempt, s.backoff_s, s.max_backoff_s, self._rng)
                self._count("retries")
                logger.debug("Earth Engine: %s; retry %d in %.2f s", e, attempt + 1, delay)
                time.sleep(delay)
                attempt += 1

    def _call(self, request: PixelRequest) -> bytes:
        import ee

        initialize(self.settings, self.credentials)
        params = {
            "expression": request.image.to_ee(),
            "fileFormat": FILE_FORMAT,
            "grid": request.grid.to_ee(),
        }
        self._count("requests")
        try:
            with self._slots:
                data = ee.data.computePixels(params)
        except Exception as e:
            kind = classify(e)
            self._count(f"errors_{kind}")
            if kind == "too_large":
                raise RequestTooLargeError(_first_line(e)) from None
            if kind == "transient":
                raise TransientError(f"{type(e).__name__}: {_first_line(e)}") from None
            if _credentials_refused(e):
                raise EarthEngineError(
                    "Earth Engine refused the credentials (HTTP 401): renew EE_ACCESS_TOKEN "
                    "(`gcloud auth print-access-token`) or set earthengine.service_account_key"
                ) from None
            raise EarthEngineError(f"Earth Engine computePixels failed: {_first_line(e)}") from None
        if not isinstance(data, bytes | bytearray):
            raise EarthEngineError(f"Earth Engine computePixels returned {type(data).__name__}, not bytes")
        self._count("bytes", len(data))
        return bytes(data)


def _decode(payload: bytes, request: PixelRequest) -> np.ndarray | None:
    """The NPY payload as a structured (H, W) array with the request's bands; None if it is not that."""
    try:
        arr = np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    names = arr.dtype.names or ()
    if arr.shape != (request.grid.height, request.grid.width) or not set(request.image.bands) <= set(names):
        return None
    return arr


def _stitch(grid: Grid, leaves: list[_Leaf], parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1 and parts[0].shape == (grid.height, grid.width):
        return parts[0]
    out = np.empty((grid.height, grid.width), dtype=parts[0].dtype)
    for leaf, part in zip(leaves, parts, strict=True):
        h, w = part.shape
        out[leaf.row_off : leaf.row_off + h, leaf.col_off : leaf.col_off + w] = part.astype(
            out.dtype, copy=False
        )
    return out


def band_stack(arr: np.ndarray, bands: Sequence[str], sentinel: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, H, W) float32 values and (H, W) validity (no band at the sentinel) of a structured array."""
    values = np.stack([np.asarray(arr[b], dtype=np.float32) for b in bands])
    valid = ~(values == np.float32(sentinel)).any(axis=0) & np.isfinite(values).all(axis=0)
    return values, valid
