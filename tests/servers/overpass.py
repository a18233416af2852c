"""A minimal Overpass API on loopback, enough for the osm stage's REAL HTTP client (requests).

`POST /api/interpreter` with the form field `data` (an Overpass QL query): every request is recorded
(path, query, User-Agent) BEFORE it is answered; the answer is JSON in the shape of the real `[out:json]`
+ `out geom` output: `{"version", "generator", "osm3s": {"timestamp_osm_base", "copyright"}, "elements":
[...]}` with nodes (lat, lon), ways (nodes, geometry, bounds) and relations (members with geometry,
bounds), taken from hand-written fixture data (`OsmFixture`) and selected as Overpass selects: by a
node, segment or member inside a `(south,west,north,east)` box of the query (NOT by bounds: an area
enclosing the whole box is not in it), or by enclosing the point of an `is_in(lat,lon)` of the query
(areas); the tag filters are not applied (the client narrows by its own tag rules). Faults are injected per request from a plan:

    with serve(OverpassHandler, **overpass_attrs(fixture, faults=["429", "504", "garbage"])) as srv:
        ... srv.log  # [OverpassRequest(path, query, user_agent, status), ...]

Faults: "429" (with Retry-After: 0), "500".."504", "garbage" (200, not JSON), "incomplete" (200, JSON
with a runtime-error remark, as Overpass sends when a query runs out of time), "400" (an HTML error page).
`OsmFixture.write_pbf` writes the same data as a .osm.pbf with osmium.SimpleWriter.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import shapely
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

SNAPSHOT = "2026-11-01T12:00:00Z"
BBOX_RE = re.compile(r"\((-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)\)")
IS_IN_RE = re.compile(r"is_in\((-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)\)")


@dataclass
class OsmFixture:
    """OSM data written by hand: nodes {id: (lon, lat, tags)}, ways {id: (node ids, tags)}, relations
    {id: ([(type, ref, role)], tags)}."""

    nodes: dict[int, tuple[float, float, dict[str, str]]] = field(default_factory=dict)
    ways: dict[int, tuple[list[int], dict[str, str]]] = field(default_factory=dict)
    relations: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = field(default_factory=dict)

    def node(self, nid: int, lon: float, lat: float, **tags: str) -> int:
        self.nodes[nid] = (lon, lat, dict(tags))
        return nid

    def way(
        self, wid: int, coords: list[tuple[float, float]], tags: dict[str, str], closed: bool = False
    ) -> int:
        """A way through new untagged nodes at `coords` (ids wid * 100 + i); closed repeats the first."""
        ids = [self.node(wid * 100 + i, lon, lat) for i, (lon, lat) in enumerate(coords)]
        self.ways[wid] = ([*ids, ids[0]] if closed else ids, dict(tags))
        return wid

    # -- the Overpass JSON of the data --------------------------------------------------------------
    def _geom(self, wid: int) -> list[dict[str, float]]:
        return [{"lat": self.nodes[n][1], "lon": self.nodes[n][0]} for n in self.ways[wid][0]]

    @staticmethod
    def _bounds(pts: list[dict[str, float]]) -> dict[str, float]:
        lats, lons = [p["lat"] for p in pts], [p["lon"] for p in pts]
        return {"minlat": min(lats), "minlon": min(lons), "maxlat": max(lats), "maxlon": max(lons)}

    def elements(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for nid, (lon, lat, tags) in sorted(self.nodes.items()):
            if tags:
                out.append({"type": "node", "id": nid, "lat": lat, "lon": lon, "tags": tags})
        for wid, (refs, tags) in sorted(self.ways.items()):
            if tags:
                g = self._geom(wid)
                out.append(
                    {
                        "type": "way",
                        "id": wid,
                        "bounds": self._bounds(g),
                        "nodes": refs,
                        "geometry": g,
                        "tags": tags,
                    }
                )
        for rid, (members, tags) in sorted(self.relations.items()):
            ms: list[dict[str, Any]] = []
            for typ, ref, role in members:
                if typ == "w":
                    ms.append({"type": "way", "ref": ref, "role": role, "geometry": self._geom(ref)})
                else:
                    lon, lat, _ = self.nodes[ref]
                    ms.append({"type": "node", "ref": ref, "role": role, "lat": lat, "lon": lon})
            pts = [p for m in ms for p in (m.get("geometry") or [m])]
            out.append(
                {"type": "relation", "id": rid, "bounds": self._bounds(pts), "members": ms, "tags": tags}
            )
        return out

    # -- the same data as a .osm.pbf ----------------------------------------------------------------
    def write_pbf(
        self, path: Path, bounds: tuple[float, float, float, float] | None, snapshot: str | None = SNAPSHOT
    ) -> Path:
        import osmium
        from osmium.osm.mutable import Node, Relation, Way

        h = osmium.io.Header()
        if bounds is not None:
            h.add_box(osmium.osm.Box(*bounds))
        if snapshot is not None:
            h.set("osmosis_replication_timestamp", snapshot)
        w = osmium.SimpleWriter(str(path), header=h, overwrite=True)
        try:
            for nid, (lon, lat, tags) in sorted(self.nodes.items()):
                w.add_node(Node(id=nid, location=(lon, lat), tags=tags))
            for wid, (refs, tags) in sorted(self.ways.items()):
                w.add_way(Way(id=wid, nodes=refs, tags=tags))
            for rid, (members, tags) in sorted(self.relations.items()):
                w.add_relation(Relation(id=rid, members=members, tags=tags))
        finally:
            w.close()
        return path


@dataclass(frozen=True)
class OverpassRequest:
    path: str
    query: str
    user_agent: str
    status: int


def _lines(el: dict[str, Any]) -> list[BaseGeometry]:
    """What a bbox filter looks at: a node's position, a way's segments, a relation's members."""
    if el["type"] == "node":
        return [Point(el["lon"], el["lat"])]
    if el["type"] == "way":
        return [LineString([(p["lon"], p["lat"]) for p in el["geometry"]])]
    out: list[BaseGeometry] = []
    for m in el["members"]:
        out += _lines({**m, "type": m["type"]}) if m["type"] == "way" else [Point(m["lon"], m["lat"])]
    return out


def _encloses(el: dict[str, Any], pt: Point) -> bool:
    """Overpass `is_in` + `pivot`: a closed way or a multipolygon relation whose area holds the point."""
    if el["type"] == "way":
        g = el["geometry"]
        return len(g) >= 4 and g[0] == g[-1] and Polygon([(p["lon"], p["lat"]) for p in g]).contains(pt)
    if el["type"] == "relation" and el.get("tags", {}).get("type") == "multipolygon":
        rings = [
            LineString([(p["lon"], p["lat"]) for p in m["geometry"]])
            for m in el["members"]
            if m["type"] == "way"
        ]
        return bool(shapely.polygonize(rings).contains(pt))
    return False


def _selected(el: dict[str, Any], boxes: list[tuple[float, ...]], points: list[Point]) -> bool:
    """As Overpass selects: a node, segment or member in a `(south,west,north,east)` box, or an area
    enclosing an `is_in(lat,lon)` point (the tag filters are the client's to apply)."""
    geoms = _lines(el)
    in_box = any(g.intersects(box(w, s, e, n)) for s, w, n, e in boxes for g in geoms)
    return in_box or any(_encloses(el, p) for p in points)


def overpass_attrs(
    fixture: OsmFixture, faults: list[str] | None = None, snapshot: str = SNAPSHOT
) -> dict[str, Any]:
    return {
        "elements": fixture.elements(),
        "faults": list(faults or []),
        "snapshot": snapshot,
        "log": [],
        "lock": threading.Lock(),
    }


class OverpassHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        srv: Any = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        query = (parse_qs(body).get("data") or [""])[0]
        with srv.lock:
            fault = srv.faults.pop(0) if srv.faults else None
            status = (
                404 if self.path != "/api/interpreter" else int(fault) if fault and fault.isdigit() else 200
            )
            srv.log.append(OverpassRequest(self.path, query, self.headers.get("User-Agent", ""), status))
        if status == 404:
            return self._send(404, b"not found", "text/plain")
        if status == 400:
            page = b"<html><body><p><strong>Error</strong>: line 3: parse error: unknown statement</p></body></html>"
            return self._send(400, page, "text/html")
        if status != 200:
            return self._send(status, b"<html><body>Too busy</body></html>", "text/html", Retry_After="0")
        if fault == "garbage":
            return self._send(200, b"<?xml version='1.0'?><osm>not json", "application/xml")
        boxes = [tuple(float(v) for v in m.groups()) for m in BBOX_RE.finditer(query)]
        points = [Point(float(m.group(2)), float(m.group(1))) for m in IS_IN_RE.finditer(query)]
        doc: dict[str, Any] = {
            "version": 0.6,
            "generator": "Overpass API 0.7.62 (loopback test server)",
            "osm3s": {
                "timestamp_osm_base": srv.snapshot,
                "copyright": "The data included in this document is from www.openstreetmap.org. The data is "
                "made available under ODbL.",
            },
            "elements": [el for el in srv.elements if _selected(el, boxes, points)],
        }
        if fault == "incomplete":
            doc["remark"] = 'runtime error: Query timed out in "query" at line 3 after 2 seconds.'
        self._send(200, json.dumps(doc).encode())
