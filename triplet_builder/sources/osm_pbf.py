"""OpenStreetMap from a local .osm.pbf (or .osm / .osm.bz2) extract, read with pyosmium, offline.

The extract is read once per worker process (filtered to elements carrying a key the tag rules read and
lying in the region's box) into `OsmData` with an STRtree; closed ways and multipolygon relations are
assembled into areas by osmium's area assembler. The same tag rules and shapes as the Overpass path
(triplet_builder/sources/osm.py `classify`) make the same section from the same data.

An extract must state its bounding box in its header (`osmium extract --bbox ...` writes it): only inside
it can a feature's absence mean "not mapped in OpenStreetMap"; a chip outside it has no data here.
`snapshot` is the header's `osmosis_replication_timestamp` (null when the file does not state it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from triplet_builder.sources import SourceError
from triplet_builder.sources.osm import RULE_KEYS, OsmData, OsmItem, classify


class PbfError(SourceError):
    """An extract that cannot be used; the message is one line naming the file."""


def _osmium() -> Any:
    """pyosmium, an optional dependency (the `osm` extra): only `source: pbf` needs it."""
    try:
        import osmium
    except ImportError:
        raise PbfError(
            "the osm stage's source pbf needs pyosmium: pip install 'sar-triplets[osm]' (or osmium)"
        ) from None
    return osmium


@dataclass(frozen=True)
class PbfHeader:
    bounds: tuple[float, float, float, float] | None  # (west, south, east, north), None when not stated
    snapshot: str | None


def read_header(path: str | Path) -> PbfHeader:
    """The extract's bounding box and replication timestamp, from its header only (no data read)."""
    osmium = _osmium()

    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
    except RuntimeError as e:
        raise PbfError(
            f"{Path(path).name} is not an OSM file osmium can read ({e}): give a .osm.pbf"
        ) from None
    try:
        h = reader.header()
        b = h.box()
        bounds = None
        if b.valid():
            bl, tr = b.bottom_left, b.top_right
            bounds = (bl.lon, bl.lat, tr.lon, tr.lat)
        snapshot = h.get("osmosis_replication_timestamp") or None
    finally:
        reader.close()
    return PbfHeader(bounds, snapshot)


def _load(path: str, queried: tuple[str, ...], bbox: tuple[float, float, float, float]) -> OsmData:
    osmium = _osmium()

    header = read_header(path)
    wkb = osmium.geom.WKBFactory()
    area = box(*bbox)
    items: list[OsmItem] = []

    def add(kind: str, oid: int, tags: dict[str, str], closed: bool, make: object, want: str) -> None:
        for feature, shape in classify(tags, kind, closed, queried):
            if shape != want:
                continue
            try:
                geom: BaseGeometry = shapely.from_wkb(make())  # type: ignore[operator]
            except (RuntimeError, shapely.errors.GEOSException):
                continue  # an invalid geometry (a way with one node, a ring osmium could not close)
            if not geom.is_empty and geom.intersects(area):
                key = f"{'r' if kind == 'area' else kind[0]}{oid}"
                items.append(OsmItem(feature, shape, key, geom, tags.get("name")))

    fp = (
        osmium.FileProcessor(path)
        .with_locations()
        .with_areas()
        .with_filter(osmium.filter.KeyFilter(*RULE_KEYS))
    )
    for obj in fp:
        tags = dict(obj.tags)
        if isinstance(obj, osmium.osm.Node):
            add("node", obj.id, tags, False, lambda o=obj: wkb.create_point(o), "point")
        elif isinstance(obj, osmium.osm.Way):
            # a closed way standing for an area comes again below as an osmium Area (from_way)
            closed = obj.is_closed() and len(obj.nodes) >= 4
            add("way", obj.id, tags, closed, lambda o=obj: wkb.create_linestring(o), "line")
        elif isinstance(obj, osmium.osm.Area):
            kind = "way" if obj.from_way() else "area"  # osmium drops a relation's `type` tag here
            add(kind, obj.orig_id(), tags, True, lambda o=obj: wkb.create_multipolygon(o), "area")
    return OsmData("pbf", header.snapshot, items)


@lru_cache(maxsize=4)
def _cached(
    path: str, mtime_ns: int, size: int, queried: tuple[str, ...], bbox: tuple[float, float, float, float]
) -> OsmData:
    return _load(path, queried, bbox)


def load_pbf(path: str | Path, queried: tuple[str, ...], bbox: tuple[float, float, float, float]) -> OsmData:
    """The extract's items of the queried features meeting `bbox` (west, south, east, north), read once
    per process for the same file, features and box."""
    st = os.stat(path)
    return _cached(str(path), st.st_mtime_ns, st.st_size, tuple(queried), tuple(bbox))  # type: ignore[arg-type]
