"""Earth Engine client core: initialise once per process, then run computePixels requests with bounded
concurrency, a deadline, bounded jittered backoff, size-driven splitting and an on-disk request cache.

Why a layer over `ee`: the pipeline makes thousands of small pixel requests per worker. The `ee` client
retries by itself without telling anyone and has no deadline by default; here its own retries are switched
off (`ee.data.setMaxRetries(0)`) so every retry is ours, bounded and counted, and every request has a
deadline (`ee.data.setDeadline`). A request that is too large for Earth Engine (over 48 MiB, over 32768
px per side, or refused by the server as too large) is never retried as is: its grid is cut in two and
the halves are fetched and stitched back. Every response is cached on disk under a hash of the request
(image recipe + grid + format), so a rerun of a finished region makes zero requests.

Requests are described by plain, hashable recipes (`ImageSpec`, `Grid`): the cache is consulted before
`ee` is even initialised, and the recipe is turned into an `ee` expression only when a fetch is needed.

Credentials: a service-account JSON key (`earthengine.service_account_key` or $EE_SERVICE_ACCOUNT_KEY),
a ready access token ($EE_ACCESS_TOKEN, e.g. from `gcloud auth print-access-token`), the login stored by
`earthengine authenticate` (~/.config/earthengine/credentials), or Application Default Credentials. The
project: `earthengine.project`, $EE_PROJECT, $GOOGLE_CLOUD_PROJECT, the key file's, or the one stored by
`earthengine set_project`. Nothing secret is logged, cached or pickled (a pickled runner carries settings
and counters only).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triplet_builder import remote
from triplet_builder.cache import DiskCache, default_cache_root
from triplet_builder.remote import backoff_delay

logger = logging.getLogger(__name__)

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
STANDARD_URL = "https://earthengine.googleapis.com"
MAX_REQUEST_BYTES = 48 * 2**20  # computePixels: "Total request size ... must be <= 50331648 bytes"
MAX_GRID_SIDE = 32768  # computePixels: pixels per side
SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
)
FILE_FORMAT = "NPY"
_CACHE_VERSION = "ee-pixels/1"

# Messages Earth Engine uses for transient trouble (rate, quota, load, time) and for requests too large.
_TRANSIENT_MESSAGE = re.compile(
    r"too many (concurrent|requests)|rate limit|quota|resource.?exhausted|timed? ?out|deadline|"
    r"unavailable|internal error|backend error|try again|service.?unavailable",
    re.IGNORECASE,
)
_TOO_LARGE_MESSAGE = re.compile(
    r"total request size|too large|too many pixels|user memory limit|payload size|exceeds the limit",
    re.IGNORECASE,
)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EarthEngineError(RuntimeError):
    """An Earth Engine request that failed for good; the message is one line."""


class EarthEngineSetupError(EarthEngineError):
    """Missing or unusable project / credentials; the message says which setting to fix."""


class RequestTooLargeError(EarthEngineError):
    """The server refused a request as too large: split it, never retry it as is."""


class TransientError(EarthEngineError):
    """Rate, quota, server or deadline trouble: worth a bounded, jittered retry."""


class ServiceUnavailable(EarthEngineError, remote.ServiceUnavailable):
    """Transient trouble that outlasted every retry: the chips that needed it are rejected with the
    reason (and retried by a later run), the task goes on."""


# ------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What a worker needs to reach Earth Engine: plain values, hashable and picklable (no secrets:
    the key file is a path, read by the worker itself)."""

    project: str | None = None
    service_account_key: str | None = None
    high_volume: bool = True
    url: str | None = None
    max_concurrent: int = 8
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, cfg: Any, cache_root: str | Path | None = None) -> ClientSettings:
        """From an `EarthEngineConfig` (the region file's `earthengine:` block) and the region's cache root."""
        return cls(
            project=cfg.project,
            service_account_key=cfg.service_account_key,
            high_volume=cfg.high_volume,
            url=cfg.url,
            max_concurrent=cfg.max_concurrent,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            max_backoff_s=cfg.max_backoff_s,
            cache_dir=None if cache_root is None else str(Path(cache_root) / "earthengine"),
        )

    @property
    def endpoint(self) -> str:
        """The API root: `url` when set (tests, private endpoints), else the high-volume or standard one."""
        if self.url:
            return self.url.rstrip("/")
        return HIGH_VOLUME_URL if self.high_volume else STANDARD_URL


def resolve_project(settings: ClientSettings) -> str:
    """The Cloud project: the setting, then $EE_PROJECT, then $GOOGLE_CLOUD_PROJECT, then the key file's."""
    project = settings.project or os.environ.get("EE_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        key = _key_path(settings)
        if key is not None:
            project = _read_key(key).get("project_id")
    if not project:
        project = (stored_login() or {}).get("quota_project_id")  # `earthengine set_project`
    if not project:
        raise EarthEngineSetupError(
            "Earth Engine needs a Cloud project: set EE_PROJECT or earthengine.project in the region file, "
            "or run `earthengine set_project PROJECT` (a project registered for Earth Engine)"
        )
    return str(project)


def _key_path(settings: ClientSettings) -> str | None:
    return settings.service_account_key or os.environ.get("EE_SERVICE_ACCOUNT_KEY") or None


def _read_key(path: str) -> dict[str, Any]:
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EarthEngineSetupError(
            f"service-account key {path} not found: fix earthengine.service_account_key or EE_SERVICE_ACCOUNT_KEY"
        ) from None
    except (OSError, ValueError):
        raise EarthEngineSetupError(
            f"service-account key {path} is not a readable JSON key file: download it again from the Cloud console"
        ) from None
    if not isinstance(info, dict) or "client_email" not in info or "private_key" not in info:
        raise EarthEngineSetupError(
            f"service-account key {path} lacks client_email / private_key: use a service-account JSON key"
        )
    return info


def stored_login() -> dict[str, Any] | None:
    """The arguments of the login `earthengine authenticate` stored (refresh token, client, scopes, and the
    project of `earthengine set_project` as `quota_project_id`), read by `ee`'s own reader from
    ~/.config/earthengine/credentials; None when there is none. Its content is never logged."""
    from ee import oauth

    try:
        args = oauth.get_credentials_arguments()
    except (OSError, ValueError):
        return None
    return args if args.get("refresh_token") else None


def load_credentials(settings: ClientSettings) -> Any:
    """Credentials in this order: a service-account key file, $EE_ACCESS_TOKEN, the stored
    `earthengine authenticate` login, Application Default Credentials. Raises EarthEngineSetupError (one
    line) when there are none."""
    key = _key_path(settings)
    if key is not None:
        from google.oauth2 import service_account

        info = _read_key(key)
        return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    token = os.environ.get("EE_ACCESS_TOKEN")
    if token:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token)
    stored = stored_login()
    if stored is not None:
        from google.oauth2.credentials import Credentials

        return Credentials(None, **stored)
    import google.auth
    import google.auth.exceptions

    try:
        creds, _ = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError:
        raise EarthEngineSetupError(
            "no Earth Engine credentials: set EE_SERVICE_ACCOUNT_KEY or earthengine.service_account_key to a "
            "service-account JSON key, or run `earthengine authenticate` or `gcloud auth application-default login`"
        ) from None
    return creds


# ----------------------------------------------------------------------------------- initialisation
_INIT_LOCK = threading.Lock()
_INIT_KEY: tuple[Any, ...] | None = None


def initialize(settings: ClientSettings, credentials: Any = None) -> None:
    """Initialise the `ee` client once per process (again only when endpoint, project or deadline change).

    The client's own retries are switched off (ours are bounded and counted) and the per-request
    deadline is set. For a non-Google endpoint (`url`), the data catalogue's deprecation list is not
    fetched from storage.googleapis.com.
    """
    global _INIT_KEY
    import ee

    project = resolve_project(settings)
    key = (settings.endpoint, project, settings.timeout_s, id(credentials) if credentials else None)
    with _INIT_LOCK:
        if _INIT_KEY == key:
            return
        creds = credentials if credentials is not None else load_credentials(settings)
        fetch_catalogue = ee.deprecation._FetchDataCatalogStac
        if settings.url:
            ee.deprecation._FetchDataCatalogStac = dict  # an empty catalogue; no call to the internet
        try:
            ee.Initialize(creds, project=project, url=settings.endpoint)
        except ee.EEException as e:
            raise EarthEngineSetupError(
                f"Earth Engine at {settings.endpoint} refused to initialise for project {project}: "
                f"{_first_line(e)}; check the project is registered for Earth Engine and the credentials"
            ) from None
        finally:
            ee.deprecation._FetchDataCatalogStac = fetch_catalogue
        ee.data.setMaxRetries(0)
        ee.data.setDeadline(settings.timeout_s * 1000.0)
        ee.data.setUserAgent("sar-triplets")
        _INIT_KEY = key
        logger.info("Earth Engine initialised at %s for project %s", settings.endpoint, project)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# -------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True, slots=True)
class Grid:
    """A computePixels pixel grid: CRS, affine (a, b, c, d, e, f) and size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def to_ee(self) -> dict[str, Any]:
        a, b, c, d, e, f = self.transform
        return {
            "dimensions": {"width": int(self.width), "height": int(self.height)},
            "affineTransform": {
                "scaleX": a,
                "shearX": b,
                "translateX": c,
                "shearY": d,
                "scaleY": e,
                "translateY": f,
            },
            "crsCode": self.crs,
        }

    def sub(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The grid of a sub-window (rows [row_off, row_off + height), columns likewise)."""
        a, b, c, d, e, f = self.transform
        return Grid(
            self.crs,
            (a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off),
            int(width),
            int(height),
        )

    def halves(self) -> tuple[tuple[int, int, Grid], tuple[int, int, Grid]]:
        """Two halves along the longer side, each with its (row_off, col_off) in this grid."""
        if self.width >= self.height:
            w0 = self.width // 2
            return (0, 0, self.sub(0, 0, self.height, w0)), (
                0,
                w0,
                self.sub(0, w0, self.height, self.width - w0),
            )
        h0 = self.height // 2
        return (0, 0, self.sub(0, 0, h0, self.width)), (h0, 0, self.sub(h0, 0, self.height - h0, self.width))


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """An Earth Engine image as a plain recipe: one asset (`image`), or the mosaic of a collection's images
    starting in [start, end); the bands to select; masked pixels unmasked to `sentinel` (so they never
    come back as zeros); values cast to float32."""

    bands: tuple[str, ...]
    sentinel: float
    image: str | None = None
    collection: str | None = None
    start: str | None = None
    end: str | None = None
    bytes_per_value: int = 4  # float32 (`toFloat`), for planning request sizes

    def __post_init__(self) -> None:
        if (self.image is None) == (self.collection is None):
            raise ValueError("ImageSpec needs exactly one of image or collection")

    def to_ee(self) -> Any:
        import ee

        if self.image is not None:
            img = ee.Image(self.image)
        else:
            col = ee.ImageCollection(self.collection)
            if self.start is not None and self.end is not None:
                col = col.filterDate(self.start, self.end)
            img = col.mosaic()
        # float32 on the wire: the 48 MiB limit and our size planning count 4 bytes per value
        return img.select(list(self.bands)).unmask(self.sentinel, False).toFloat()


@dataclass(frozen=True, slots=True)
class PixelRequest:
    image: ImageSpec
    grid: Grid

    @property
    def nbytes(self) -> int:
        """Planned response size (what Earth Engine's 48 MiB limit counts)."""
        return self.grid.width * self.grid.height * len(self.image.bands) * self.image.bytes_per_value

    def cache_key(self) -> str:
        blob = json.dumps(
            {
                "v": _CACHE_VERSION,
                "image": asdict(self.image),
                "grid": self.grid.to_ee(),
                "format": FILE_FORMAT,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def fits(self, max_bytes: int = MAX_REQUEST_BYTES, max_side: int = MAX_GRID_SIDE) -> bool:
        return self.nbytes <= max_bytes and max(self.grid.width, self.grid.height) <= max_side

    def halves(self) -> tuple[tuple[int, int, PixelRequest], tuple[int, int, PixelRequest]]:
        (r0, c0, g0), (r1, c1, g1) = self.grid.halves()
        return (r0, c0, PixelRequest(self.image, g0)), (r1, c1, PixelRequest(self.image, g1))


# ---------------------------------------------------------------------------------------------- cache
PixelCache = DiskCache  # responses of computePixels, one entry per request hash


def default_cache_dir() -> Path:
    return default_cache_root() / "earthengine"


# --------------------------------------------------------------------------------------------- errors
def classify(exc: BaseException) -> str:
    """'too_large', 'transient' or 'fatal' for an exception out of an `ee` call.

    `ee` turns googleapiclient's HttpError into an EEException carrying only the message; the HttpError
    (and its HTTP status) is kept as the exception's context, so both are looked at.
    """
    from http.client import HTTPException

    from googleapiclient.errors import HttpError

    # a dropped, stalled, truncated or garbled answer (httplib2 and the JSON decoding of `ee` raise these)
    broken = (
        TimeoutError,
        ConnectionError,
        HTTPException,
        UnicodeDecodeError,
        json.JSONDecodeError,
    )
    if isinstance(exc, broken) or isinstance(exc.__context__, broken):
        return "transient"
    http = exc if isinstance(exc, HttpError) else exc.__context__
    message = str(exc)
    status = None
    if isinstance(http, HttpError):
        status = int(getattr(http.resp, "status", 0) or 0)
        message = f"{message} {http._get_reason()}"
    if _TOO_LARGE_MESSAGE.search(message) and status in (None, 400, 413):
        return "too_large"
    if status in _TRANSIENT_STATUS or isinstance(http, TimeoutError | ConnectionError):
        return "transient"
    if status in (None, 400) and _TRANSIENT_MESSAGE.search(message):  # e.g. "Computation timed out." (400)
        return "transient"
    return "fatal"


def _credentials_refused(exc: BaseException) -> bool:
    """An HTTP 401, or the refresh google-auth attempts after one with a token that cannot refresh."""
    from google.auth.exceptions import RefreshError
    from googleapiclient.errors import HttpError

    for e in (exc, exc.__context__, exc.__cause__):
        if isinstance(e, RefreshError):
            return True
        if isinstance(e, HttpError) and int(getattr(e.resp, "status", 0) or 0) == 401:
            return True
    return False


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
