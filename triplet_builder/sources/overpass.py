"""OpenStreetMap from an Overpass API: one Overpass QL query per batch of chips (their joint bounding box),
answers cached on disk, requests rate limited, transient failures retried.

`POST {endpoint}/interpreter` with the form field `data` = the query (`[out:json][timeout:N]; (...); out
geom;`), our descriptive User-Agent. 429, 5xx, timeouts, connection errors, unreadable answers and
answers Overpass itself marks incomplete (a `remark` with a runtime error: the server ran out of time or
memory, and the elements it sent are not all there) are retried with `triplet_builder.remote.
backoff_delay` (Retry-After obeyed), never cached; other answers (400: a query the server refuses) fail
at once. Only complete answers are cached (key: endpoint + query text), so a rerun sends nothing.
`min_interval_s` spaces requests of one process to one endpoint (each worker process keeps its own pace:
workers x 1 / min_interval_s requests per second at most).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from random import Random
from typing import Any

import requests
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from schemas.vocabulary import OSM_FEATURES
from triplet_builder.cache import DiskCache
from triplet_builder.remote import USER_AGENT, backoff_delay
from triplet_builder.sources import SourceError
from triplet_builder.sources.osm import MULTIPOLYGON_TYPES, RULE_OF, OsmData, OsmItem, classify

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = (429, 500, 502, 503, 504)
OVERPASS_USER_AGENT = f"{USER_AGENT} (OpenStreetMap annotation stage of a SAR dataset builder)"
CONNECT_TIMEOUT_S = 10.0
READ_MARGIN_S = 30.0  # the server may take its whole [timeout:N] before answering


class OverpassError(SourceError):
    """An Overpass request that failed for good; the message is one line naming the endpoint."""


# ----------------------------------------------------------------------------------------------- query
def build_query(bbox: tuple[float, float, float, float], features: Iterable[str], timeout_s: int) -> str:
    """The Overpass QL query of the features' tag rules over a (west, south, east, north) box, rounded
    outwards to 1e-5 degree (about a metre) so the same chips give the same text (and cache key).

    A bbox filter finds the elements with a node or a segment in the box, so an area enclosing the WHOLE
    box (a farmland field around a chip) would be missed and read as "not mapped": area features also
    take the closed ways and multipolygons that enclose the box's centre (`is_in` + `pivot`; an area that
    meets the box without enclosing its centre has its outline in the box)."""
    w, s, e, n = bbox
    bb = f"{_down(s)},{_down(w)},{_up(n)},{_up(e)}"  # Overpass order: south, west, north, east
    lines = [
        f"[out:json][timeout:{int(timeout_s)}];",
        f"is_in({(s + n) / 2:.6f},{(w + e) / 2:.6f})->.enclosing;",
        "(",
    ]
    seen: set[str] = set()
    for f in features:
        for flt in RULE_OF[f].overpass:
            if flt not in seen:
                seen.add(flt)
                lines.append(f"  nwr{flt}({bb});")
                if OSM_FEATURES[f] == "area":
                    lines += [f"  way{flt}(pivot.enclosing);", f"  rel{flt}(pivot.enclosing);"]
    lines += [");", "out geom;"]
    return "\n".join(lines)


def _down(v: float) -> str:
    return f"{int(v * 1e5 // 1) / 1e5:.5f}"


def _up(v: float) -> str:
    return f"{-int(-v * 1e5 // 1) / 1e5:.5f}"


# ---------------------------------------------------------------------------------------------- answer
def _coords(points: list[Any]) -> list[tuple[float, float]]:
    return [(float(p["lon"]), float(p["lat"])) for p in points if p is not None]


def multipolygon(outer: list[LineString], inner: list[LineString]) -> BaseGeometry:
    """A multipolygon from its member ways (rings may be split over several ways): outers minus inners."""

    def rings(lines: list[LineString]) -> BaseGeometry:
        polys = list(shapely.get_parts(shapely.polygonize(lines))) if lines else []
        return shapely.union_all(polys) if polys else Polygon()

    geom = rings(outer)
    if inner and not geom.is_empty:
        geom = geom.difference(rings(inner))
    return shapely.make_valid(geom) if not geom.is_valid else geom


def _geometry(el: dict[str, Any], shape: str) -> BaseGeometry | None:
    kind = el["type"]
    if kind == "node":
        return Point(float(el["lon"]), float(el["lat"]))
    if kind == "way":
        pts = _coords(el.get("geometry") or [])
        if len(pts) < 2:
            return None
        if shape == "area":
            return Polygon(pts) if len(pts) >= 4 else None
        return LineString(pts)
    outer: list[LineString] = []
    inner: list[LineString] = []
    for m in el.get("members") or []:
        pts = _coords(m.get("geometry") or []) if m.get("type") == "way" else []
        if len(pts) >= 2:
            (inner if m.get("role") == "inner" else outer).append(LineString(pts))
    geom = multipolygon(outer, inner)
    return None if geom.is_empty else geom


def parse_answer(doc: dict[str, Any], queried: Iterable[str]) -> OsmData:
    """The items of an Overpass JSON answer (`out geom`), through the tag rules of sources/osm.py."""
    queried = list(queried)
    items: list[OsmItem] = []
    for el in doc["elements"]:
        kind, tags = el.get("type"), el.get("tags") or {}
        if kind not in ("node", "way", "relation") or not tags:
            continue
        if kind == "relation" and tags.get("type") not in MULTIPOLYGON_TYPES:
            continue  # routes, sites, ...: not a geometry of their own here
        pts: list[Any] = (el.get("geometry") or []) if kind == "way" else []
        closed = len(pts) >= 4 and pts[0] == pts[-1]
        element = "area" if kind == "relation" else kind
        for feature, shape in classify(tags, element, closed, queried):
            geom = _geometry(el, shape)
            if geom is not None and not geom.is_empty:
                items.append(OsmItem(feature, shape, f"{kind[0]}{el['id']}", geom, tags.get("name")))
    snapshot = (doc.get("osm3s") or {}).get("timestamp_osm_base")
    return OsmData("overpass", str(snapshot) if snapshot else None, items)


def _decode(content: bytes) -> tuple[dict[str, Any] | None, str]:
    """The JSON answer, or why it is not a usable one (garbage, wrong shape, marked incomplete)."""
    try:
        doc = json.loads(content)
    except ValueError:
        return None, f"unreadable answer ({len(content)} bytes, not JSON)"
    if not isinstance(doc, dict) or not isinstance(doc.get("elements"), list):
        return None, "answer without an `elements` list"
    remark = str(doc.get("remark") or "")
    if "error" in remark.lower():
        return None, f"incomplete answer (remark: {remark.splitlines()[0][:200]})"
    return doc, ""


# ---------------------------------------------------------------------------------------------- client
class RateLimiter:
    """At least `min_interval_s` between the starts of consecutive requests (thread-safe)."""

    def __init__(
        self,
        min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()
        self.last: float | None = None

    def wait(self) -> None:
        with self.lock:
            now = self.clock()
            if self.last is not None and (gap := self.min_interval_s - (now - self.last)) > 0:
                self.sleep(gap)
                now = self.clock()
            self.last = now


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(endpoint: str, min_interval_s: float) -> RateLimiter:
    """The process-wide limiter of an endpoint (every stage instance of a worker shares its pace)."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((endpoint, min_interval_s), RateLimiter(min_interval_s))


@dataclass(frozen=True)
class OverpassSettings:
    endpoint: str
    timeout_s: int = 180
    min_interval_s: float = 1.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @property
    def url(self) -> str:
        return self.endpoint.rstrip("/") + "/interpreter"


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _body_line(resp: requests.Response) -> str:
    """The first line of an error page's text (Overpass answers errors in HTML)."""
    text = re.sub(r"<[^>]+>", " ", resp.text or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")[:200]


class OverpassClient:
    """Sends queries with the cache, the rate limit and the retries; counters go to `counters`
    (requests, retries, cache_hits, bytes)."""

    def __init__(
        self,
        settings: OverpassSettings,
        cache: DiskCache | None,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Random | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.limiter = limiter or limiter_for(settings.endpoint, settings.min_interval_s)
        self.sleep = sleep
        self.rng = rng
        self.session = requests.Session()
        self.session.headers["User-Agent"] = OVERPASS_USER_AGENT

    def cache_key(self, query: str) -> str:
        return hashlib.sha256(f"overpass\n{self.settings.url}\n{query}".encode()).hexdigest()

    def query(self, text: str, counters: Counter[str]) -> dict[str, Any]:
        """The JSON answer of one query (from the cache when a complete one is there)."""
        s = self.settings
        key = self.cache_key(text)
        if self.cache is not None and (blob := self.cache.get(key)) is not None:
            counters["cache_hits"] += 1
            return json.loads(blob)  # type: ignore[no-any-return]
        error = ""
        for attempt in range(s.max_retries + 1):
            self.limiter.wait()
            counters["requests"] += 1
            retry_after = None
            try:
                resp = self.session.post(
                    s.url, data={"data": text}, timeout=(CONNECT_TIMEOUT_S, s.timeout_s + READ_MARGIN_S)
                )
            except (requests.Timeout, requests.ConnectionError) as e:
                error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            else:
                if resp.status_code == 200:
                    doc, error = _decode(resp.content)
                    if doc is not None:
                        counters["bytes"] += len(resp.content)
                        if self.cache is not None:
                            self.cache.put(key, resp.content)
                        return doc
                elif resp.status_code in TRANSIENT_STATUS:
                    error, retry_after = f"HTTP {resp.status_code}", _retry_after(resp)
                else:
                    raise OverpassError(
                        f"Overpass API {s.url} refused the query (HTTP {resp.status_code}: {_body_line(resp)}): "
                        "check the osm stage's endpoint"
                    )
            if attempt == s.max_retries:
                break
            counters["retries"] += 1
            delay = backoff_delay(attempt, s.backoff_s, s.max_backoff_s, self.rng, retry_after)
            logger.debug("Overpass %s: %s; retry %d in %.2f s", s.url, error, attempt + 1, delay)
            self.sleep(delay)
        raise OverpassError(
            f"Overpass API {s.url} failed {s.max_retries + 1} time(s), last: {error}: the server is busy or "
            "unreachable; rerun later (answers already received are cached), raise the osm stage's "
            "max_retries, or set missing: skip"
        )

    def close(self) -> None:
        self.session.close()
