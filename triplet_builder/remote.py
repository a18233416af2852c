"""What every remote read shares: our User-Agent, the GDAL path of a URL, and the GDAL settings of HTTP /
cloud reads (used by the STAC scene source, the tile stage and the AlphaEarth COG provider)."""

from __future__ import annotations

import os
import random

import rasterio

from triplet_builder import __version__

USER_AGENT = f"sar-triplets/{__version__}"

# our User-Agent (some hosts, e.g. the AlphaEarth mirror, refuse the default ones), no directory listing
# on open (one request per file instead of a listing plus sidecar probes), merged ranges, bounded retries
HTTP_GDAL_OPTIONS = {
    "GDAL_HTTP_USERAGENT": USER_AGENT,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def gdal_path(href: str) -> str:
    """A URL as a path GDAL opens: http(s) through /vsicurl/, s3:// and gs:// through /vsis3/ and /vsigs/,
    file:// and local paths as they are."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return "/vsis3/" + href.removeprefix("s3://")
    if href.startswith("gs://"):
        return "/vsigs/" + href.removeprefix("gs://")
    if href.startswith("file://"):
        return href.removeprefix("file://")
    return href


def gdal_env(**options: str) -> rasterio.Env:
    """rasterio.Env with HTTP_GDAL_OPTIONS updated by `options`.

    rasterio.Env sets options for the calling thread only, and GDAL fetches blocks from its own threads
    (GDAL_NUM_THREADS) and Dask starts workers later: the User-Agent also goes into the process
    environment (setdefault: a value the user set wins), the only option safe to set process-wide (the
    others would change how local files, or other remote ones, are read)."""
    opts = {**HTTP_GDAL_OPTIONS, **options}
    os.environ.setdefault("GDAL_HTTP_USERAGENT", opts["GDAL_HTTP_USERAGENT"])
    return rasterio.Env(**opts)


class ServiceUnavailable(RuntimeError):
    """A remote service that stayed unavailable through every retry (rate limits, 5xx, resets, timeouts,
    garbled answers). Stages reject the chips that needed it with a `*_unavailable` reason and go on, so
    no chip is dropped silently and a rerun can retry them; anything else (a refused key, a bad request)
    still fails loudly."""


# the reject reasons of chips whose remote service stayed unavailable: transient, worth a rerun
REJECT_SCENE_UNAVAILABLE = "scene_unavailable"
REJECT_EMBEDDINGS_UNAVAILABLE = "embeddings_unavailable"


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    rng: random.Random | None = None,
    retry_after: float | None = None,
) -> float:
    """Jittered exponential backoff of every remote client here: uniform in [0.5, 1] x
    min(max_s, base_s * 2**attempt) for attempt 0, 1, ...; at least the server's Retry-After (also
    bounded by max_s)."""
    delay = min(max_s, base_s * 2.0**attempt) * (rng or random).uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(max_s, retry_after))
    return delay


__all__ = [
    "HTTP_GDAL_OPTIONS",
    "REJECT_EMBEDDINGS_UNAVAILABLE",
    "REJECT_SCENE_UNAVAILABLE",
    "USER_AGENT",
    "ServiceUnavailable",
    "backoff_delay",
    "gdal_env",
    "gdal_path",
]
