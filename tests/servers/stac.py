"""A minimal STAC API (core + item-search + query) on loopback, enough for the REAL pystac-client.

Serves a landing page `/` (conformance classes and links self / root / search / conformance / data),
`/conformance`, `/collections`, `/collections/<id>` and `/search` (GET and POST). The search filters an
in-memory list of item dicts by collection, ids, bbox or intersects (shapely), datetime interval and the
query extension (eq / neq / lt / lte / gt / gte / in), and pages with a `next` link carrying a token
(GET: in the URL; POST: in the body). Every request is logged with its User-Agent; faults are injected:

    with serve(StacHandler, **stac_server_attrs(items, page_size=2, fail_next_searches=2)) as srv:
        ... srv.log  # [StacRequest(method, path, params, status, user_agent), ...]
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from shapely.geometry import box, shape

from tests.servers.faults import inject

CORE = "https://api.stacspec.org/v1.0.0/core"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
QUERY = "https://api.stacspec.org/v1.0.0/item-search#query"
CONFORMANCE = [CORE, ITEM_SEARCH, QUERY]


@dataclass(frozen=True)
class StacRequest:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    user_agent: str


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _interval(value: str | None) -> tuple[datetime | None, datetime | None]:
    """A STAC datetime parameter ('a/b', '../b', 'a/..' or one instant) as (start, end), None = open."""
    if not value:
        return None, None
    if "/" not in value:
        t = _parse_time(value)
        return t, t
    a, b = value.split("/", 1)
    return (
        None if a in ("", "..") else _parse_time(a),
        None if b in ("", "..") else _parse_time(b),
    )


def _item_span(item: dict[str, Any]) -> tuple[datetime, datetime]:
    p = item["properties"]
    if p.get("datetime"):
        t = _parse_time(p["datetime"])
        return t, t
    return _parse_time(p["start_datetime"]), _parse_time(p["end_datetime"])


_OPS = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "lt": lambda v, x: v is not None and v < x,
    "lte": lambda v, x: v is not None and v <= x,
    "gt": lambda v, x: v is not None and v > x,
    "gte": lambda v, x: v is not None and v >= x,
    "in": lambda v, x: v in x,
}


def matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether an item passes the search parameters (already decoded into JSON types)."""
    if params.get("collections") and item.get("collection") not in params["collections"]:
        return False
    if params.get("ids") and item["id"] not in params["ids"]:
        return False
    geom = shape(item["geometry"])
    if params.get("intersects") and not geom.intersects(shape(params["intersects"])):
        return False
    if params.get("bbox") and not geom.intersects(box(*params["bbox"][:4])):
        return False
    start, end = _interval(params.get("datetime"))
    i0, i1 = _item_span(item)
    if (start is not None and i1 < start) or (end is not None and i0 > end):
        return False
    for prop, ops in (params.get("query") or {}).items():
        for op, x in ops.items():
            if not _OPS[op](item["properties"].get(prop), x):
                return False
    return True


def _decode_get(qs: str) -> dict[str, Any]:
    """GET search parameters -> the POST body form (lists and JSON objects decoded)."""
    raw = {k: v[-1] for k, v in parse_qs(qs).items()}
    out: dict[str, Any] = dict(raw)
    for k in ("collections", "ids"):
        if k in raw:
            out[k] = raw[k].split(",")
    if "bbox" in raw:
        out["bbox"] = [float(v) for v in raw["bbox"].split(",")]
    for k in ("intersects", "query"):
        if k in raw:
            out[k] = json.loads(raw[k])
    if "limit" in raw:
        out["limit"] = int(raw["limit"])
    return out


class StacHandler(BaseHTTPRequestHandler):
    """Serves `server.items` (list of STAC item dicts) of `server.collections` (id -> collection dict);
    pages of `server.page_size`; `server.fail_search` ("400", "500", "503" or "badjson") breaks every search,
    `server.fail_next_searches` answers the next n searches with 503; logs to `server.log` under
    `server.lock`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _send(
        self, status: int, body: bytes, params: dict[str, Any], ctype: str = "application/json"
    ) -> None:
        srv = self.server
        with srv.lock:  # recorded BEFORE the answer: a client that gives up early is still counted
            srv.log.append(  # type: ignore[attr-defined]
                StacRequest(
                    self.command, urlsplit(self.path).path, params, status, self.headers.get("User-Agent", "")
                )
            )
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, params: dict[str, Any] | None = None, status: int = 200) -> None:
        ctype = "application/geo+json" if obj.get("type") == "FeatureCollection" else "application/json"
        self._send(status, json.dumps(obj).encode(), params or {}, ctype)

    def _landing(self) -> dict[str, Any]:
        b = self.base
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "loopback-stac",
            "description": "test STAC API",
            "conformsTo": self.server.conformance,  # type: ignore[attr-defined]
            "links": [
                {"rel": "self", "href": f"{b}/", "type": "application/json"},
                {"rel": "root", "href": f"{b}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{b}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{b}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "POST"},
            ],
        }

    def _collection(self, cid: str) -> dict[str, Any] | None:
        col = self.server.collections.get(cid)  # type: ignore[attr-defined]
        if col is None:
            return None
        links = [
            {"rel": "self", "href": f"{self.base}/collections/{cid}"},
            {"rel": "root", "href": f"{self.base}/"},
            {"rel": "items", "href": f"{self.base}/collections/{cid}/items"},
        ]
        return {**col, "links": links}

    # -- search --------------------------------------------------------------------------------------
    def _search(self, params: dict[str, Any], method: str) -> None:
        srv = self.server
        fault = getattr(srv, "fail_search", None)
        with srv.lock:  # type: ignore[attr-defined]
            if srv.fail_next_searches > 0:  # type: ignore[attr-defined]
                srv.fail_next_searches -= 1  # type: ignore[attr-defined]
                fault = "503"
        if fault == "503":
            self._send(503, b'{"code": "ServiceUnavailable", "description": "busy"}', params)
            return
        if fault == "500":
            self._send(500, b'{"code": "InternalError", "description": "search backend down"}', params)
            return
        if fault == "400":
            self._send(400, b'{"code": "BadRequest", "description": "unknown collection"}', params)
            return
        if fault == "badjson":
            self._send(200, b"<html>maintenance</html>", params, "application/geo+json")
            return
        hits = [it for it in srv.items if matches(it, params)]  # type: ignore[attr-defined]
        start = int(params.get("token") or 0)
        size = min(int(params.get("limit") or srv.page_size), srv.page_size)  # type: ignore[attr-defined]
        page = hits[start : start + size]
        features = [self._with_links(it) for it in page]
        links: list[dict[str, Any]] = [{"rel": "root", "href": f"{self.base}/"}]
        if start + size < len(hits):
            nxt = {**params, "token": str(start + size)}
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.base}/search", "method": "POST", "body": nxt})
            else:
                links.append(
                    {"rel": "next", "href": f"{self.base}/search?{_encode_get(nxt)}", "method": "GET"}
                )
        body = {"type": "FeatureCollection", "features": features, "links": links, "numberMatched": len(hits)}
        self._json(body, params)

    def _with_links(self, item: dict[str, Any]) -> dict[str, Any]:
        cid = item.get("collection")
        links = [
            {"rel": "self", "href": f"{self.base}/collections/{cid}/items/{item['id']}"},
            {"rel": "collection", "href": f"{self.base}/collections/{cid}"},
            {"rel": "root", "href": f"{self.base}/"},
        ]
        return {**item, "links": links}

    # -- verbs ---------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if inject(self, f"GET {self.path}"):  # server.fault_plan: deterministic faults
            return
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if path == "/":
            self._json(self._landing())
        elif path == "/conformance":
            self._json({"conformsTo": self.server.conformance})  # type: ignore[attr-defined]
        elif path == "/collections":
            cols = [self._collection(c) for c in self.server.collections]  # type: ignore[attr-defined]
            self._json({"collections": cols, "links": []})
        elif path.startswith("/collections/") and path.count("/") == 2:
            col = self._collection(path.rsplit("/", 1)[1])
            if col is None:
                self._json({"code": "NotFound", "description": "no such collection"}, status=404)
            else:
                self._json(col)
        elif path == "/search":
            try:
                params = _decode_get(parts.query)
            except ValueError as e:
                self._json({"code": "BadRequest", "description": str(e)}, status=400)
                return
            self._search(params, "GET")
        else:
            self._json({"code": "NotFound", "description": path}, status=404)

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/search":
            self._json({"code": "NotFound", "description": self.path}, status=404)
            return
        n = int(self.headers.get("Content-Length") or 0)
        try:
            raw = self.rfile.read(n)
            if inject(self, f"POST {self.path} {raw.decode(errors='replace')}"):
                return
            params = json.loads(raw or b"{}")
        except ValueError as e:
            self._json({"code": "BadRequest", "description": str(e)}, status=400)
            return
        self._search(params, "POST")


def _encode_get(params: dict[str, Any]) -> str:
    """The POST body form -> GET query parameters (lists comma-joined, objects as JSON)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        if k in ("collections", "ids", "bbox") and isinstance(v, list):
            out[k] = ",".join(str(x) for x in v)
        elif isinstance(v, dict):
            out[k] = json.dumps(v)
        else:
            out[k] = str(v)
    return urlencode(out)


def stac_server_attrs(
    items: list[dict[str, Any]],
    collections: dict[str, dict[str, Any]] | None = None,
    *,
    page_size: int = 10,
    fail_search: str | None = None,
    fail_next_searches: int = 0,
    conformance: list[str] | None = None,
) -> dict[str, object]:
    """The attributes `serve(StacHandler, **stac_server_attrs(...))` needs; collections default to one
    minimal collection per collection id the items name."""
    if collections is None:
        collections = {
            cid: {
                "type": "Collection",
                "stac_version": "1.0.0",
                "id": cid,
                "description": f"test collection {cid}",
                "license": "proprietary",
                "extent": {
                    "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                    "temporal": {"interval": [[None, None]]},
                },
            }
            for cid in dict.fromkeys(str(it.get("collection")) for it in items)
        }
    return {
        "items": items,
        "collections": collections,
        "page_size": page_size,
        "fail_search": fail_search,
        "fail_next_searches": fail_next_searches,
        "conformance": list(CONFORMANCE if conformance is None else conformance),
        "log": [],
        "lock": threading.Lock(),
    }
