"""Sentinel-1 scenes (RTC or GRD COGs) found through a STAC API with pystac-client, read by range requests.

`find_stac_scenes(cfg)` searches `scenes.url` / `scenes.collection` over the region polygon, once per year
(or once for the date range), with the catalogue's `query` extension when `scenes.query` is given. It keeps
the items that have an asset for every requested polarisation (`scenes.assets`: pol -> asset key, default
the lower-case pol), the requested orbit direction (`sat:orbit_state`) and a coverage of the region by the
item footprint of at least `scenes.min_coverage`; ranks them best coverage first, then earliest; and opens
the requested assets of the best `scenes.max_scenes` with rasterio (header only) for the grid, CRS and
nodata. An item whose assets cannot be opened becomes a `SceneFailure` ("unreadable") and the next
candidate takes its place; a search that fails raises `StacSearchError` (one line).

Asset hrefs become GDAL paths (`https://...` -> `/vsicurl/https://...`, `s3://b/k` -> `/vsis3/b/k`), so
workers read chip windows with range requests. Every request carries `User-Agent: sar-triplets/<version>`:
pystac-client through its headers, GDAL through GDAL_HTTP_USERAGENT, set in a rasterio.Env AND in the
process environment (GDAL's own worker threads do not see rasterio's thread-local options; Dask worker
processes started after the search inherit the environment).

Catalogues whose assets need signed URLs (Microsoft Planetary Computer): `find_stac_scenes(cfg,
modifier=planetary_computer.sign_inplace)` (a pystac-client modifier) signs the hrefs. It is not used
automatically from a region file: a signed URL carries its SAS token into the SceneRef, hence into the
manifest and the shards' `source_uris`, and it expires (about an hour) before a long build ends; signing
belongs on the reading side (unsigned URIs stored, signed when a worker opens them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import rasterio
import shapely
from pyproj import Transformer
from rasterio.errors import RasterioError
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from triplet_builder.area import area_polygon
from triplet_builder.config import StacScenesConfig
from triplet_builder.geo import SceneGeo, utm_crs_for
from triplet_builder.record import Backscatter, BandRef, GeorefKind, Scale, SceneRef
from triplet_builder.remote import HTTP_GDAL_OPTIONS, USER_AGENT, backoff_delay, gdal_env, gdal_path
from triplet_builder.sources import SourceError
from triplet_builder.sources.local import SceneFailure

if TYPE_CHECKING:
    import pystac

    from triplet_builder.config import RegionConfig

logger = logging.getLogger(__name__)

SEARCH_TIMEOUT_S = 60.0
# transient answers of a STAC API, retried with bounded jittered exponential backoff (Retry-After obeyed);
# anything else (4xx, bad JSON) fails at once
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
SEARCH_RETRIES = 4
SEARCH_BACKOFF_S = 1.0
SEARCH_MAX_BACKOFF_S = 30.0
# answers broken below HTTP (truncated, not UTF-8, a reset mid-body: urllib3's retries see only statuses
# and failed connections) are asked again this many more times, the whole search at once
BROKEN_ANSWER_RETRIES = 2
GDAL_OPTIONS = HTTP_GDAL_OPTIONS
Modifier = Callable[[Any], None]
T = TypeVar("T")


class StacSearchError(SourceError):
    """A STAC search that failed (HTTP error, unreachable API, bad JSON); the message is one line."""


# ------------------------------------------------------------------------------------------- helpers
def _reproject(tr: Transformer, geom: BaseGeometry) -> BaseGeometry:
    """`geom` through the transformer (lon/lat -> UTM metres)."""
    return shapely.transform(geom, lambda x, y: tr.transform(x, y), interleaved=False)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    code = getattr(e, "status_code", None)  # pystac-client's APIError carries the HTTP status
    name = f"HTTP {code}" if code else type(e).__name__
    return f"{name}: {first[:300]}" if first else name


def _periods(cfg: RegionConfig) -> list[str]:
    """STAC datetime intervals to search: one per year, or the date range (end day included)."""
    if cfg.years is not None:
        # closed interval up to the next new year: an item exactly at midnight is dropped by the date check
        return [f"{y}-01-01T00:00:00Z/{y + 1}-01-01T00:00:00Z" for y in cfg.years]
    assert cfg.dates is not None
    end = cfg.dates.end + timedelta(days=1)
    return [f"{cfg.dates.start.isoformat()}T00:00:00Z/{end.isoformat()}T00:00:00Z"]


def _needs_signing(url: str) -> bool:
    """Catalogues known to serve assets only through signed URLs (Microsoft Planetary Computer)."""
    return "planetarycomputer.microsoft.com" in url


# -------------------------------------------------------------------------------------------- search
def _client_errors() -> tuple[type[BaseException], ...]:
    """What pystac-client and pystac raise for an API that fails or is not an item-search API: HTTP and
    connection errors, bad JSON, not a catalogue, missing conformance (a Warning class it raises)."""
    import pystac
    from pystac_client.errors import ClientTypeError
    from pystac_client.exceptions import APIError
    from pystac_client.warnings import DoesNotConformTo

    return (
        APIError,
        ClientTypeError,
        DoesNotConformTo,
        pystac.STACError,
        pystac.STACTypeError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
    )


def _stac_io() -> Any:
    """pystac-client's HTTP layer with our User-Agent, a timeout and retries of transient errors only
    (POST included: a search is read-only)."""
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util import Retry

    retry = Retry(
        total=SEARCH_RETRIES,
        status_forcelist=TRANSIENT_STATUS,
        allowed_methods=None,  # every method
        backoff_factor=SEARCH_BACKOFF_S,
        backoff_max=SEARCH_MAX_BACKOFF_S,
        backoff_jitter=SEARCH_BACKOFF_S / 2,
        raise_on_status=False,  # the last answer's status reaches pystac-client, which names it
    )
    return StacApiIO(headers={"User-Agent": USER_AGENT}, timeout=SEARCH_TIMEOUT_S, max_retries=retry)


def _again_if_broken(fn: Callable[[], T]) -> T:
    """`fn()`, called again (bounded, with backoff) when the answer broke below HTTP: pystac-client's
    APIError without a status (a truncated or non-UTF-8 body, a reset). HTTP errors were already retried
    by urllib3 where transient; a well-formed answer that is not JSON (a maintenance page) fails at once."""
    from pystac_client.exceptions import APIError

    for attempt in range(BROKEN_ANSWER_RETRIES + 1):
        try:
            return fn()
        except APIError as e:
            if getattr(e, "status_code", None) is not None or attempt == BROKEN_ANSWER_RETRIES:
                raise
            time.sleep(backoff_delay(attempt, SEARCH_BACKOFF_S, SEARCH_MAX_BACKOFF_S))
    raise AssertionError("unreachable")  # pragma: no cover


def search_items(
    src: StacScenesConfig,
    region: BaseGeometry,
    periods: list[str],
    *,
    modifier: Modifier | None = None,
) -> list[pystac.Item]:
    """The items of `src.collection` over the region in each period (deduplicated by id), with the real
    pystac-client; raise StacSearchError (one line naming the URL) on any failure."""
    from pystac_client import Client

    try:
        client = _again_if_broken(lambda: Client.open(src.url, modifier=modifier, stac_io=_stac_io()))
    except _client_errors() as e:
        raise StacSearchError(
            f"STAC API {src.url} could not be opened ({_one_line(e)}): check scenes.url (the API root) "
            "and the network, then rerun"
        ) from None
    items: dict[str, pystac.Item] = {}
    for period in periods:
        try:
            search = client.search(
                collections=[src.collection],
                intersects=mapping(region),
                datetime=period,
                query=src.query,
                max_items=src.max_items,
            )
            found = _again_if_broken(lambda s=search: list(s.items()))  # type: ignore[misc]
        except _client_errors() as e:
            raise StacSearchError(
                f"STAC search of {src.url} (collection {src.collection}, {period}) failed "
                f"({_one_line(e)}): check scenes.url / collection / query, then rerun"
            ) from None
        if len(found) >= src.max_items:
            logger.warning(
                "STAC search of %s stopped at scenes.max_items=%d items for %s: raise it to see more",
                src.url,
                src.max_items,
                period,
            )
        for it in found:
            items.setdefault(it.id, it)
    return list(items.values())


# -------------------------------------------------------------------------------------------- select
@dataclass(frozen=True)
class Candidate:
    """An item that passed the catalogue checks: its asset paths in polarisation order and its coverage."""

    item: pystac.Item
    uris: tuple[str, ...]
    coverage: float
    acquired: datetime


def item_time(item: pystac.Item) -> datetime | None:
    """The acquisition time: the item datetime, else start_datetime (UTC)."""
    t = item.datetime
    if t is None:
        raw = item.properties.get("start_datetime")
        if not raw:
            return None
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def asset_keys(src: StacScenesConfig) -> list[str]:
    """The asset key of each requested polarisation (scenes.assets, default the lower-case pol)."""
    mapping_ = {k.upper(): v for k, v in (src.assets or {}).items()}
    return [mapping_.get(p, p.lower()) for p in src.polarisations]


def candidate(
    item: pystac.Item,
    src: StacScenesConfig,
    region_utm: BaseGeometry,
    to_utm: Transformer,
    accepts: Callable[[date], bool],
) -> tuple[Candidate | None, str]:
    """The item as a candidate scene, or None and why it does not qualify."""
    keys = asset_keys(src)
    missing = [f"{p} ({k})" for p, k in zip(src.polarisations, keys, strict=True) if k not in item.assets]
    if missing:
        return None, f"no asset for {', '.join(missing)}"
    orbit = str(item.properties.get("sat:orbit_state", "")).lower() or None
    if src.orbit_direction is not None and orbit != src.orbit_direction:
        return None, f"orbit {orbit}"
    acquired = item_time(item)
    if acquired is None:
        return None, "no datetime or start_datetime"
    if not accepts(acquired.date()):
        return None, f"acquired {acquired.date()} outside the dates"
    if item.geometry is None:
        return None, "no geometry"
    foot = _reproject(to_utm, shape(item.geometry))
    inter = foot.intersection(region_utm)
    coverage = inter.area / region_utm.area if region_utm.area > 0 else 0.0
    if inter.is_empty or coverage < src.min_coverage:
        return None, f"covers {coverage:.0%} of the region (scenes.min_coverage {src.min_coverage:.0%})"
    uris = tuple(gdal_path(item.assets[k].get_absolute_href() or item.assets[k].href) for k in keys)
    return Candidate(item, uris, coverage, acquired), ""


def rank(cands: list[Candidate]) -> list[Candidate]:
    """Best coverage first, then earliest, then id (a stable order whatever the search order)."""
    return sorted(cands, key=lambda c: (-round(c.coverage, 6), c.acquired, c.item.id))


# ---------------------------------------------------------------------------------------------- open
def _sensor(platform: Any) -> str:
    """'sentinel-1a' / 'SENTINEL-1A' -> 'Sentinel-1A'."""
    p = str(platform or "").strip()
    if not p:
        return "Sentinel-1"
    if p.lower().startswith("sentinel-"):
        return "Sentinel-" + p[len("sentinel-") :].upper()
    return p


def _georef(ds: Any) -> tuple[GeorefKind, str | None, tuple[float, ...] | None]:
    """How the dataset is georeferenced, its CRS string and its affine (affine scenes only)."""
    if ds.crs is not None and not ds.transform.is_identity:
        return GeorefKind.AFFINE, ds.crs.to_string(), tuple(ds.transform)[:6]
    gcps, gcrs = ds.gcps
    if gcps:
        return GeorefKind.GCPS, gcrs.to_string() if gcrs is not None else "EPSG:4326", None
    if ds.rpcs is not None:
        return GeorefKind.RPCS, "EPSG:4326", None
    raise ValueError("no CRS + geotransform, GCPs or RPCs")


def _backscatter(src: StacScenesConfig, props: dict[str, Any]) -> tuple[Backscatter, str]:
    """The region file's convention, else the item's: `sar:product_type` RTC is gamma0 RTC (the STAC SAR
    extension; OPERA RTC-S1 and Planetary Computer's sentinel-1-rtc items say so), else unknown."""
    if src.backscatter != "auto":
        return Backscatter(src.backscatter), "declared"
    if str(props.get("sar:product_type", "")).upper() == "RTC":
        return Backscatter.GAMMA0, "stac:sar:product_type"
    return Backscatter.UNKNOWN, "none"


def scene_for(cand: Candidate, src: StacScenesConfig) -> SceneRef:
    """Open the candidate's assets (headers only) and describe the scene; raise on an unreadable asset or
    assets of different grids."""
    item, props = cand.item, cand.item.properties
    with gdal_env():
        with rasterio.open(cand.uris[0]) as ds:
            kind, crs, affine = _georef(ds)
            width, height, nodata = ds.width, ds.height, ds.nodata
        for uri in cand.uris[1:]:
            with rasterio.open(uri) as other:
                if (other.width, other.height) != (width, height):
                    raise ValueError(
                        f"{uri} is {other.width} x {other.height} px, {cand.uris[0]} {width} x {height}"
                    )
    backscatter, backscatter_source = _backscatter(src, props)
    scene = SceneRef(
        scene_id=item.id,
        bands=tuple(BandRef(u, 1, p) for u, p in zip(cand.uris, src.polarisations, strict=True)),
        acquired=cand.acquired,
        acquired_source="stac",
        sensor=_sensor(props.get("platform")),
        mode=props.get("sar:instrument_mode"),
        orbit_direction=str(props.get("sat:orbit_state", "")).lower() or None,
        scale=Scale(src.scale),
        scale_source="declared",
        backscatter=backscatter,
        backscatter_source=backscatter_source,
        georef=kind,
        crs=crs,
        width=int(width),
        height=int(height),
        pixel_size_m=0.0,
        nodata=None if nodata is None or math.isnan(nodata) else float(nodata),
        product=props.get("sar:product_type"),
        transform=affine,  # type: ignore[arg-type]  # 6 floats: georeferencing opens no file again
    )
    with gdal_env():  # GCP / RPC scenes reopen the asset to build their transformer
        pixel = SceneGeo(scene).native_pixel_size_m()
    return dataclasses.replace(scene, pixel_size_m=round(float(pixel), 3))


def open_best(cands: list[Candidate], src: StacScenesConfig) -> tuple[list[SceneRef], list[SceneFailure]]:
    """Open candidates in rank order until `max_scenes` opened; an unreadable one is a failure and the next
    candidate takes its place."""
    scenes: list[SceneRef] = []
    failures: list[SceneFailure] = []
    for cand in cands:
        if src.max_scenes is not None and len(scenes) >= src.max_scenes:
            break
        try:
            scenes.append(scene_for(cand, src))
        except (RasterioError, ValueError, OSError) as e:
            failures.append(
                SceneFailure(
                    cand.uris[0],
                    "unreadable",
                    f"STAC item {cand.item.id}: asset not readable ({_one_line(e)}): "
                    "check the asset URL and its access (signing, credentials)",
                )
            )
    return scenes, failures


# ---------------------------------------------------------------------------------------------- entry
def find_stac_scenes(
    cfg: RegionConfig, *, modifier: Modifier | None = None
) -> tuple[list[SceneRef], list[SceneFailure]]:
    """The Sentinel-1 items of the region and dates as scenes (best coverage first then earliest, at most
    `scenes.max_scenes`, returned in acquisition order) and the items that could not be opened.
    `modifier` is a pystac-client modifier (e.g. URL signing; see the module docstring for its cost)."""
    src = cfg.scenes
    if not isinstance(src, StacScenesConfig):
        raise ValueError("find_stac_scenes needs scenes.type stac")
    region = area_polygon(cfg.area)
    c = region.centroid
    to_utm = Transformer.from_crs("EPSG:4326", utm_crs_for(c.x, c.y), always_xy=True)
    region_utm = _reproject(to_utm, region)
    if modifier is None and _needs_signing(src.url):
        logger.warning(
            "%s serves assets through signed URLs only: pass modifier=planetary_computer.sign_inplace "
            "(package planetary-computer) or expect every item to be unreadable",
            src.url,
        )
    items = search_items(src, region, _periods(cfg), modifier=modifier)
    cands: list[Candidate] = []
    for item in items:
        cand, why = candidate(item, src, region_utm, to_utm, cfg.accepts_date)
        if cand is None:
            logger.info("STAC item %s not used: %s", item.id, why)
            continue
        cands.append(cand)
    scenes, failures = open_best(rank(cands), src)
    scenes.sort(key=lambda s: (s.acquired, s.scene_id))
    logger.info(
        "STAC %s: %d item(s), %d candidate(s), %d scene(s) of %s over the region",
        src.url,
        len(items),
        len(cands),
        len(scenes),
        src.collection,
    )
    return scenes, failures


__all__ = ["USER_AGENT", "StacSearchError", "find_stac_scenes", "gdal_env", "gdal_path"]
