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

The client is split by job: credentials.py (settings, project, credentials, `initialize`), recipes.py
(`Grid`, `ImageSpec`, `PixelRequest`), errors.py (the exceptions and `classify`) and runner.py
(`ComputePixelsRunner`, decoding and stitching, `band_stack`); every name is importable from
`triplet_builder.earthengine`.
"""

from __future__ import annotations

from triplet_builder.earthengine.credentials import (
    HIGH_VOLUME_URL,
    SCOPES,
    STANDARD_URL,
    ClientSettings,
    initialize,
    load_credentials,
    resolve_project,
    stored_login,
)
from triplet_builder.earthengine.errors import (
    EarthEngineError,
    EarthEngineSetupError,
    RequestTooLargeError,
    ServiceUnavailable,
    TransientError,
    classify,
)
from triplet_builder.earthengine.recipes import (
    FILE_FORMAT,
    MAX_GRID_SIDE,
    MAX_REQUEST_BYTES,
    Grid,
    ImageSpec,
    PixelRequest,
)
from triplet_builder.earthengine.runner import ComputePixelsRunner, PixelCache, band_stack, default_cache_dir
from triplet_builder.remote import backoff_delay

__all__ = [
    "FILE_FORMAT",
    "HIGH_VOLUME_URL",
    "MAX_GRID_SIDE",
    "MAX_REQUEST_BYTES",
    "SCOPES",
    "STANDARD_URL",
    "ClientSettings",
    "ComputePixelsRunner",
    "EarthEngineError",
    "EarthEngineSetupError",
    "Grid",
    "ImageSpec",
    "PixelCache",
    "PixelRequest",
    "RequestTooLargeError",
    "ServiceUnavailable",
    "TransientError",
    "backoff_delay",
    "band_stack",
    "classify",
    "default_cache_dir",
    "initialize",
    "load_credentials",
    "resolve_project",
    "stored_login",
]
