"""OpenStreetMap features for the `osm` fact section: the tag rules that map OSM tags to the vocabulary's
features (`schemas.vocabulary.OSM_FEATURES`), the geometry each element stands for, and the per-chip
measures (count, geodesic length or area, 3 x 3 cells, names, built-up fraction).

Both sources (an Overpass API, triplet_builder/sources/overpass.py; a local .osm.pbf extract,
triplet_builder/sources/osm_pbf.py) turn elements into `OsmItem`s through `classify` here, so the same
data gives the same section whichever way it was read.

Tag rules (an element may match several features: a road on a bridge is a road and a bridge):

| feature | OSM tags |
|---|---|
| port | `landuse=port`; `harbour=*` (not `no`) |
| pier | `man_made=pier` |
| breakwater | `man_made=breakwater`, `man_made=groyne` |
| airport | `aeroway=aerodrome` |
| runway / taxiway / apron | `aeroway=runway` / `aeroway=taxiway` / `aeroway=apron` |
| bridge | `man_made=bridge` (the outline); a way with `bridge=*` (not `no`) and `highway=*` or `railway=*` |
| road | `highway=` one of ROAD_CLASSES (roads for motor vehicles: not footway, path, cycleway, track, steps) |
| railway | `railway=rail` |
| building | `building=*` (not `no`) |
| industrial area / residential area / farmland | `landuse=industrial` / `residential` / `farmland` |
| storage tank | `man_made=storage_tank` |
| wind turbine | `power=generator` + `generator:source=wind` |
| offshore platform | `man_made=offshore_platform` |

Shapes: a node is a point; a multipolygon relation (`type=multipolygon`) is an area; a closed way is an
area for area and point features (unless `area=no`) and for line features only when it is an outline
(`area=yes`, or `man_made=bridge`); any other way is a line. Lengths are summed over line shapes only
(an outline is counted and placed in cells, never turned into a length); areas over area shapes only (a
node is counted and placed, never given an area).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import LineString, Point, box
from shapely.geometry.base import BaseGeometry

from schemas.frames import cell_of
from schemas.vocabulary import OSM_FEATURES

Shape = Literal["point", "line", "area"]
Tags = Mapping[str, str]

GEOD = Geod(ellps="WGS84")
MAX_NAMES = 5
# highway values of roads for motor vehicles (links and service roads included; footway, path, cycleway,
# bridleway, steps, pedestrian, track, construction and proposed are not roads here)
ROAD_CLASSES = frozenset(
    {
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "living_street",
        "service",
        "road",
        "motorway_link",
        "trunk_link",
        "primary_link",
        "secondary_link",
        "tertiary_link",
    }
)
_NOT_RAILWAY = frozenset({"abandoned", "razed", "dismantled", "proposed", "construction"})
_NOT_HIGHWAY = frozenset({"proposed", "construction", "abandoned", "razed"})


def _is(tags: Tags, key: str, *values: str) -> bool:
    return tags.get(key) in values


def _set(tags: Tags, key: str) -> bool:
    """The key is present with a value other than `no`."""
    return key in tags and tags[key] != "no"


@dataclass(frozen=True)
class Rule:
    """One feature's tag rule: `test` decides on an element's tags; `overpass` are the Overpass QL tag
    filters of the same rule (each becomes a `nwr[...](bbox);` statement), a superset `test` narrows."""

    feature: str
    test: Callable[[Tags], bool]
    overpass: tuple[str, ...]


def _bridge(t: Tags) -> bool:
    if _is(t, "man_made", "bridge"):
        return True
    on_way = (_set(t, "highway") and t["highway"] not in _NOT_HIGHWAY) or (
        _set(t, "railway") and t["railway"] not in _NOT_RAILWAY
    )
    return _set(t, "bridge") and on_way


RULES: tuple[Rule, ...] = (
    Rule(
        "port",
        lambda t: _is(t, "landuse", "port") or _set(t, "harbour"),
        ('["landuse"="port"]', '["harbour"]'),
    ),
    Rule("pier", lambda t: _is(t, "man_made", "pier"), ('["man_made"="pier"]',)),
    Rule(
        "breakwater",
        lambda t: _is(t, "man_made", "breakwater", "groyne"),
        ('["man_made"~"^(breakwater|groyne)$"]',),
    ),
    Rule("airport", lambda t: _is(t, "aeroway", "aerodrome"), ('["aeroway"="aerodrome"]',)),
    Rule("runway", lambda t: _is(t, "aeroway", "runway"), ('["aeroway"="runway"]',)),
    Rule("taxiway", lambda t: _is(t, "aeroway", "taxiway"), ('["aeroway"="taxiway"]',)),
    Rule("apron", lambda t: _is(t, "aeroway", "apron"), ('["aeroway"="apron"]',)),
    Rule(
        "bridge",
        _bridge,
        (
            '["man_made"="bridge"]',
            '["bridge"]["bridge"!="no"]["highway"]',
            '["bridge"]["bridge"!="no"]["railway"]',
        ),
    ),
    Rule(
        "road",
        lambda t: t.get("highway") in ROAD_CLASSES and not _is(t, "area", "yes"),
        ('["highway"~"^(' + "|".join(sorted(ROAD_CLASSES)) + ')$"]',),
    ),
    Rule("railway", lambda t: _is(t, "railway", "rail"), ('["railway"="rail"]',)),
    Rule("building", lambda t: _set(t, "building"), ('["building"]',)),
    Rule("industrial area", lambda t: _is(t, "landuse", "industrial"), ('["landuse"="industrial"]',)),
    Rule("residential area", lambda t: _is(t, "landuse", "residential"), ('["landuse"="residential"]',)),
    Rule("farmland", lambda t: _is(t, "landuse", "farmland"), ('["landuse"="farmland"]',)),
    Rule("storage tank", lambda t: _is(t, "man_made", "storage_tank"), ('["man_made"="storage_tank"]',)),
    Rule(
        "wind turbine",
        lambda t: _is(t, "power", "generator") and _is(t, "generator:source", "wind"),
        ('["power"="generator"]["generator:source"="wind"]',),
    ),
    Rule(
        "offshore platform",
        lambda t: _is(t, "man_made", "offshore_platform"),
        ('["man_made"="offshore_platform"]',),
    ),
)
RULE_OF: dict[str, Rule] = {r.feature: r for r in RULES}  # one rule per vocabulary feature (tested)
# the keys the rules read: a .osm.pbf reader keeps only elements with one of them
RULE_KEYS = ("landuse", "harbour", "man_made", "aeroway", "bridge", "highway", "railway", "building", "power")


def features_of(tags: Tags, queried: Iterable[str] = OSM_FEATURES) -> list[str]:
    """The features (of `queried`, in vocabulary order) whose tag rule the tags match."""
    wanted = set(queried)
    return [r.feature for r in RULES if r.feature in wanted and r.test(tags)]


MULTIPOLYGON_TYPES = ("multipolygon", "boundary")  # relations that are areas (osmium assembles these)


def shape_of(feature: str, tags: Tags, element: str, closed: bool) -> Shape | None:
    """What geometry an element of `feature` stands for (module docstring), or None to ignore it (an
    open way of a point or area feature). `element`: node, way, or area (a multipolygon relation)."""
    kind = OSM_FEATURES[feature]
    if element == "node":
        return "point"
    if element == "area":
        return "area"
    if kind == "line":
        outline = _is(tags, "area", "yes") or (feature == "bridge" and _is(tags, "man_made", "bridge"))
        return "area" if closed and outline else "line"
    if closed and not _is(tags, "area", "no"):
        return "area"
    return None


def classify(tags: Tags, element: str, closed: bool, queried: Iterable[str]) -> list[tuple[str, Shape]]:
    """(feature, shape) for each queried feature an element stands for."""
    out: list[tuple[str, Shape]] = []
    for f in features_of(tags, queried):
        s = shape_of(f, tags, element, closed)
        if s is not None:
            out.append((f, s))
    return out


@dataclass(frozen=True)
class OsmItem:
    """One element as one feature: `key` identifies the element (e.g. 'w123'), `geometry` is lon/lat."""

    feature: str
    shape: Shape
    key: str
    geometry: BaseGeometry
    name: str | None


@dataclass
class OsmData:
    """The items of one read (an Overpass answer or a .osm.pbf extract), indexed by an STRtree."""

    source: Literal["overpass", "pbf"]
    snapshot: str | None
    items: list[OsmItem]
    tree: shapely.STRtree = field(init=False)

    def __post_init__(self) -> None:
        self.tree = shapely.STRtree([i.geometry for i in self.items])

    def near(self, geom: BaseGeometry) -> list[OsmItem]:
        """Items whose envelope meets `geom`'s (candidates: clip them)."""
        return [self.items[int(k)] for k in self.tree.query(geom)]


def footprint_area_m2(footprint: BaseGeometry) -> float:
    """Geodesic (WGS84) area of a lon/lat polygon, square metres."""
    return abs(float(GEOD.geometry_area_perimeter(footprint)[0]))


def _measure(shape: Shape, clipped: BaseGeometry, footprint: BaseGeometry) -> float:
    """How much of an item the clip kept, in its own dimension (0 = it only touches the footprint)."""
    if shape == "point":
        return 0.0 if clipped.is_empty else 1.0
    if shape == "line":  # a line lying along the footprint's outline only is not inside it
        inside = clipped.length > 0 and clipped.difference(footprint.boundary).length > 0
        return float(GEOD.geometry_length(clipped)) if inside else 0.0
    return footprint_area_m2(clipped) if clipped.area > 0 else 0.0


def _cell(c: int) -> tuple[BaseGeometry, BaseGeometry]:
    """Cell c (0-based) as a box in normalized coordinates, and its right and bottom borders inside the
    image (a line lying on a border belongs to the cell right of / below it, as points do)."""
    x0, y0 = c % 3 / 3.0, c // 3 / 3.0
    x1, y1 = x0 + 1 / 3.0, y0 + 1 / 3.0
    borders = [LineString([(x1, y0), (x1, y1)])] if c % 3 < 2 else []
    borders += [LineString([(x0, y1), (x1, y1)])] if c // 3 < 2 else []
    return box(x0, y0, x1, y1), shapely.union_all(borders) if borders else LineString()


_CELLS = [_cell(c) for c in range(9)]
_TINY = 1e-9  # normalized length or area (a micrometre, a mm2 of a km chip): float noise at a border


def cells_of(shape: Shape, geom_norm: BaseGeometry) -> set[int]:
    """The 3 x 3 cells (1..9) a geometry in normalized chip coordinates (x right, y down) touches: points
    by `schemas.frames.cell_of`; lines where they share length with a cell (not only along its right or
    bottom border), areas where they share area with it."""
    if shape == "point":
        return {cell_of(p.x, p.y) for p in shapely.get_parts(geom_norm) if isinstance(p, Point)}
    out = set()
    for c, (cell, borders) in enumerate(_CELLS):
        part = geom_norm.intersection(cell)
        if shape == "area":
            hit = part.area > _TINY
        else:
            hit = part.length > _TINY and part.difference(borders).length > _TINY
        if hit:
            out.add(c + 1)
    return out


ToNorm = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _to_norm(geom: BaseGeometry, to_norm: ToNorm, step_deg: float) -> BaseGeometry:
    """A lon/lat geometry in normalized chip coordinates, its edges densified first (straight in lon/lat
    is not straight in the scene's pixels)."""
    if step_deg > 0 and geom.geom_type != "Point" and geom.geom_type != "MultiPoint":
        geom = shapely.segmentize(geom, step_deg)

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = to_norm(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)


def summarise(
    data: OsmData, footprint: BaseGeometry, to_norm: ToNorm, queried: Iterable[str]
) -> dict[str, Any]:
    """The `osm` section of one chip: per feature with at least one element meeting the footprint
    (in its own dimension) the element count, geodesic length (lines) or area (areas) inside the
    footprint, the cells the clipped geometries touch and up to MAX_NAMES sorted distinct names; and the
    building area / footprint area (null when buildings were not queried)."""
    queried = [f for f in OSM_FEATURES if f in set(queried)]
    step = max(footprint.bounds[2] - footprint.bounds[0], footprint.bounds[3] - footprint.bounds[1]) / 32.0
    acc: dict[str, dict[str, Any]] = {}
    buildings: list[BaseGeometry] = []
    for item in data.near(footprint):
        if item.feature not in queried:
            continue
        clipped = item.geometry.intersection(footprint)
        amount = _measure(item.shape, clipped, footprint)
        if amount <= 0:
            continue
        a = acc.setdefault(
            item.feature, {"keys": set(), "length": 0.0, "area": 0.0, "cells": set(), "names": set()}
        )
        a["keys"].add(item.key)
        if item.shape == "line":
            a["length"] += amount
        elif item.shape == "area":
            a["area"] += amount
            if item.feature == "building":
                buildings.append(clipped)
        a["cells"] |= cells_of(item.shape, _to_norm(clipped, to_norm, step))
        if item.name:
            a["names"].add(item.name)
    features = {}
    for f in queried:
        if f not in acc:
            continue
        a, kind = acc[f], OSM_FEATURES[f]
        features[f] = {
            "count": len(a["keys"]),
            "length_m": round(a["length"], 1) if kind == "line" else None,
            "area_m2": round(a["area"], 1) if kind == "area" else None,
            "cells": sorted(a["cells"]),
            "names": sorted(a["names"])[:MAX_NAMES],
        }
    built_up = None
    if "building" in queried:
        fp_area = footprint_area_m2(footprint)
        b_area = footprint_area_m2(shapely.union_all(buildings)) if buildings else 0.0
        built_up = round(min(1.0, b_area / fp_area), 4) if fp_area > 0 else None
    return {
        "source": data.source,
        "snapshot": data.snapshot,
        "queried": queried,
        "features": features,
        "built_up_fraction": built_up,
    }
