"""OpenStreetMap sources: the tag rules per feature, the per-chip measures (lengths and areas recomputed
by hand, clipping at the chip edge, cells, names, built-up fraction), the Overpass client with the REAL
requests library against a loopback Overpass API (cache, rate limit, retries, faults) and a .osm.pbf
written with osmium.SimpleWriter read back to the same section as the Overpass answer of the same data."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from schemas.vocabulary import OSM_FEATURES
from tests.servers import serve
from tests.servers.overpass import SNAPSHOT, OsmFixture, OverpassHandler, overpass_attrs
from triplet_builder import __version__
from triplet_builder.cache import DiskCache
from triplet_builder.sources.osm import RULE_OF, classify, features_of, shape_of, summarise
from triplet_builder.sources.osm_pbf import load_pbf, read_header
from triplet_builder.sources.overpass import (
    OverpassClient,
    OverpassError,
    OverpassSettings,
    RateLimiter,
    build_query,
    parse_answer,
)

ALL = tuple(OSM_FEATURES)
# the chip: a 0.03 degree square; normalized chip coordinates are linear in lon / lat (x right, y down)
W, S, E, N = 4.40, 43.40, 4.43, 43.43
FOOTPRINT = box(W, S, E, N)


def to_norm(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(lon) - W) / (E - W), (N - np.asarray(lat)) / (N - S)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float, r: float = 6_371_008.8) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(math.sqrt(h))


# ------------------------------------------------------------------------------------------- tag rules
@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"landuse": "port"}, ["port"]),
        ({"harbour": "yes"}, ["port"]),
        ({"harbour": "no"}, []),
        ({"man_made": "pier"}, ["pier"]),
        ({"man_made": "breakwater"}, ["breakwater"]),
        ({"man_made": "groyne"}, ["breakwater"]),
        ({"aeroway": "aerodrome"}, ["airport"]),
        ({"aeroway": "runway"}, ["runway"]),
        ({"aeroway": "taxiway"}, ["taxiway"]),
        ({"aeroway": "apron"}, ["apron"]),
        ({"man_made": "bridge"}, ["bridge"]),
        ({"highway": "primary", "bridge": "yes"}, ["bridge", "road"]),
        ({"highway": "footway", "bridge": "yes"}, ["bridge"]),  # a footbridge is a bridge, not a road
        ({"railway": "rail", "bridge": "viaduct"}, ["bridge", "railway"]),
        ({"highway": "primary", "bridge": "no"}, ["road"]),
        ({"bridge": "yes"}, []),  # a bridge tag on nothing that crosses
        ({"highway": "motorway"}, ["road"]),
        ({"highway": "residential"}, ["road"]),
        ({"highway": "service"}, ["road"]),
        ({"highway": "footway"}, []),
        ({"highway": "path"}, []),
        ({"highway": "track"}, []),
        ({"highway": "cycleway"}, []),
        ({"highway": "residential", "area": "yes"}, []),
        ({"railway": "rail"}, ["railway"]),
        ({"railway": "abandoned"}, []),
        ({"railway": "tram"}, []),
        ({"building": "yes"}, ["building"]),
        ({"building": "industrial"}, ["building"]),
        ({"building": "no"}, []),
        ({"landuse": "industrial"}, ["industrial area"]),
        ({"landuse": "residential"}, ["residential area"]),
        ({"landuse": "farmland"}, ["farmland"]),
        ({"landuse": "meadow"}, []),
        ({"man_made": "storage_tank"}, ["storage tank"]),
        ({"power": "generator", "generator:source": "wind"}, ["wind turbine"]),
        ({"power": "generator", "generator:source": "solar"}, []),
        ({"man_made": "offshore_platform"}, ["offshore platform"]),
        ({"natural": "water"}, []),
    ],
)
def test_tag_rules(tags: dict[str, str], expected: list[str]) -> None:
    assert sorted(features_of(tags)) == sorted(expected)


def test_every_feature_has_one_rule_and_an_overpass_filter() -> None:
    assert list(RULE_OF) == list(OSM_FEATURES)
    assert all(RULE_OF[f].overpass for f in OSM_FEATURES)


def test_features_of_keeps_only_queried() -> None:
    assert features_of({"highway": "primary", "bridge": "yes"}, ["road"]) == ["road"]


@pytest.mark.parametrize(
    ("feature", "tags", "element", "closed", "shape"),
    [
        ("road", {"highway": "residential"}, "way", True, "line"),  # a loop road is still a road line
        ("pier", {"man_made": "pier", "area": "yes"}, "way", True, "area"),
        ("bridge", {"man_made": "bridge"}, "way", True, "area"),  # the outline of the bridge
        ("building", {"building": "yes"}, "way", True, "area"),
        ("building", {"building": "yes"}, "way", False, None),  # an unclosed building is broken data
        ("farmland", {"landuse": "farmland", "area": "no"}, "way", True, None),
        ("wind turbine", {"power": "generator"}, "node", False, "point"),
        ("farmland", {"landuse": "farmland"}, "area", True, "area"),
    ],
)
def test_shapes(feature: str, tags: dict[str, str], element: str, closed: bool, shape: str | None) -> None:
    assert shape_of(feature, tags, element, closed) == shape


# -------------------------------------------------------------------------------------------- measures
def _data(fx: OsmFixture, queried: tuple[str, ...] = ALL):  # type: ignore[no-untyped-def]
    return parse_answer({"elements": fx.elements(), "osm3s": {"timestamp_osm_base": SNAPSHOT}}, queried)


def test_length_of_a_north_south_road_is_its_haversine() -> None:
    fx = OsmFixture()
    fx.way(1, [(4.405, 43.405), (4.405, 43.425)], {"highway": "primary", "name": "D570"})
    fx.way(2, [(4.42, 43.405), (4.42, 43.425)], {"highway": "primary", "name": "D36"})  # on a cell border
    sec = summarise(_data(fx), FOOTPRINT, to_norm, ["road"])
    road = sec["features"]["road"]
    by_hand = 2 * haversine_m(4.41, 43.405, 4.41, 43.425)  # 2 x 2,223.9 m on the mean sphere
    assert road["count"] == 2 and road["names"] == ["D36", "D570"] and road["area_m2"] is None
    # the ellipsoid's meridian arc at 43 N differs from the mean sphere's by under 0.5 %
    assert road["length_m"] == pytest.approx(by_hand, rel=5e-3)
    # x = 1/6: the left column; x = 2/3 (a border): the right column, as a point there would be
    assert road["cells"] == [1, 3, 4, 6, 7, 9]
    assert sec["source"] == "overpass" and sec["snapshot"] == SNAPSHOT and sec["queried"] == ["road"]


def test_area_of_a_known_square_and_the_built_up_fraction() -> None:
    fx = OsmFixture()
    sq = [(4.40, 43.43), (4.415, 43.43), (4.415, 43.415), (4.40, 43.415)]  # the top-left quarter
    fx.way(2, sq, {"building": "yes"}, closed=True)
    sec = summarise(_data(fx), FOOTPRINT, to_norm, ALL)
    b = sec["features"]["building"]
    lat = math.radians(43.4225)  # the square's middle latitude
    side_ns = haversine_m(4.40, 43.415, 4.40, 43.43)
    side_ew = haversine_m(4.40, 43.4225, 4.415, 43.4225)
    assert b["area_m2"] == pytest.approx(side_ns * side_ew, rel=5e-3)
    assert b["area_m2"] == pytest.approx(1212.0 * 1668.0, rel=0.01)  # ~1.67 km x 1.21 km at cos(43.4) = 0.727
    assert math.cos(lat) == pytest.approx(0.727, abs=1e-3)
    assert b["length_m"] is None and b["cells"] == [1, 2, 4, 5]
    assert sec["built_up_fraction"] == pytest.approx(0.25, abs=1e-3)


def test_clipping_at_the_chip_edge() -> None:
    fx = OsmFixture()
    fx.way(3, [(4.38, 43.41), (4.42, 43.41)], {"highway": "primary"})  # half of it west of the chip
    fx.way(
        4, [(4.42, 43.39), (4.44, 43.39), (4.44, 43.41), (4.42, 43.41)], {"landuse": "farmland"}, closed=True
    )
    fx.way(5, [(4.50, 43.41), (4.51, 43.41)], {"highway": "primary"})  # outside: not counted
    fx.way(6, [(4.43, 43.41), (4.45, 43.41)], {"railway": "rail"})  # only touches the east edge
    sec = summarise(_data(fx), FOOTPRINT, to_norm, ALL)
    road, farm = sec["features"]["road"], sec["features"]["farmland"]
    assert road["count"] == 1 and road["length_m"] == pytest.approx(
        haversine_m(4.40, 43.41, 4.42, 43.41), rel=5e-3
    )
    # a quarter of the farmland square is in the chip: its south-east corner cell
    inside = haversine_m(4.42, 43.40, 4.43, 43.40) * haversine_m(4.42, 43.40, 4.42, 43.41)
    assert farm["count"] == 1 and farm["area_m2"] == pytest.approx(inside, rel=5e-3) and farm["cells"] == [9]
    assert "railway" not in sec["features"]  # a line along the edge shares no length with the chip
    assert sec["built_up_fraction"] == 0.0  # buildings queried, none there


def test_points_cells_names_and_what_is_not_queried() -> None:
    fx = OsmFixture()
    fx.node(7, 4.415, 43.415, power="generator", **{"generator:source": "wind"})  # the centre cell
    fx.node(8, 4.429, 43.401, power="generator", **{"generator:source": "wind"}, name="Eole")  # cell 9
    for i, name in enumerate(["F", "B", "A", "E", "D", "C", "A"]):
        fx.way(
            20 + i,
            [(4.401, 43.429 - i * 0.001), (4.409, 43.429 - i * 0.001)],
            {"highway": "service", "name": name},
        )
    queried = ("road", "wind turbine", "railway")
    sec = summarise(_data(fx, queried), FOOTPRINT, to_norm, queried)
    assert sec["queried"] == ["road", "railway", "wind turbine"]  # vocabulary order
    assert sec["features"]["wind turbine"] == {
        "count": 2,
        "length_m": None,
        "area_m2": None,
        "cells": [5, 9],
        "names": ["Eole"],
    }
    assert sec["features"]["road"]["count"] == 7
    assert sec["features"]["road"]["names"] == ["A", "B", "C", "D", "E"]  # distinct, sorted, at most 5
    assert "railway" not in sec["features"] and sec["built_up_fraction"] is None  # buildings not queried


def test_multipolygon_with_a_hole_and_a_ring_split_over_two_ways() -> None:
    fx = OsmFixture()
    # outer: the chip's middle 0.01 degree square, its ring in two ways; inner: a 0.004 degree hole
    fx.way(30, [(4.41, 43.41), (4.42, 43.41), (4.42, 43.42)], {})
    fx.way(31, [(4.42, 43.42), (4.41, 43.42), (4.41, 43.41)], {})
    fx.way(32, [(4.413, 43.413), (4.417, 43.413), (4.417, 43.417), (4.413, 43.417)], {}, closed=True)
    fx.relations[40] = (
        [("w", 30, "outer"), ("w", 31, "outer"), ("w", 32, "inner")],
        {"type": "multipolygon", "landuse": "industrial", "name": "Fos"},
    )
    fx.relations[41] = (
        [("w", 30, "")],
        {"type": "route", "route": "road", "highway": "primary"},
    )  # not an area
    sec = summarise(_data(fx), FOOTPRINT, to_norm, ALL)
    ind = sec["features"]["industrial area"]
    outer = haversine_m(4.41, 43.415, 4.42, 43.415) * haversine_m(4.41, 43.41, 4.41, 43.42)
    hole = haversine_m(4.413, 43.415, 4.417, 43.415) * haversine_m(4.413, 43.413, 4.413, 43.417)
    assert ind["count"] == 1 and ind["names"] == ["Fos"] and ind["cells"] == [5]
    assert ind["area_m2"] == pytest.approx(outer - hole, rel=5e-3)
    assert "road" not in sec["features"]  # untagged member ways and a route relation are no roads


# --------------------------------------------------------------------------------------------- Overpass
def test_query_text() -> None:
    q = build_query((4.4, 43.3, 4.95, 43.7), ["road", "wind turbine"], 90)
    assert q.startswith("[out:json][timeout:90];\nis_in(43.500000,4.675000)->.enclosing;\n(")
    assert q.endswith(");\nout geom;") and "pivot" not in q  # no area feature asked for
    assert '  nwr["power"="generator"]["generator:source"="wind"](43.30000,4.40000,43.70000,4.95000);' in q
    assert q.count("nwr[") == 2
    # rounded OUTWARDS: a box edge is never moved into the chips
    assert "(43.12345,4.12345,43.12346,4.12346)" in build_query(
        (4.123456, 43.123456, 4.123451, 43.123451), ["road"], 1
    )


def test_an_area_enclosing_the_whole_query_box_is_found(tmp_path: Path) -> None:
    """A bbox filter sees only nodes and segments in the box: a field around the chips is found through
    the query's is_in(centre) + pivot statements, never read as "not mapped"."""
    fx = OsmFixture()
    fx.way(1, [(4.0, 43.0), (5.0, 43.0), (5.0, 44.0), (4.0, 44.0)], {"landuse": "farmland"}, closed=True)
    fx.way(2, [(4.0, 43.0), (5.0, 43.0)], {"highway": "primary"})  # far outside: not selected
    q = build_query(FOOTPRINT.bounds, ["farmland", "road"], 5)
    assert (
        '  way["landuse"="farmland"](pivot.enclosing);' in q
        and '  rel["landuse"="farmland"](pivot.enclosing);' in q
    )
    with serve(OverpassHandler, **overpass_attrs(fx)) as srv:
        doc = _client(srv.url, tmp_path).query(q, Counter())
    assert [e["id"] for e in doc["elements"]] == [1]
    sec = summarise(parse_answer(doc, ["farmland", "road"]), FOOTPRINT, to_norm, ["farmland", "road"])
    inside = haversine_m(W, 43.415, E, 43.415) * haversine_m(W, S, W, N)
    assert sec["features"]["farmland"]["area_m2"] == pytest.approx(inside, rel=5e-3)
    assert sec["features"]["farmland"]["cells"] == list(range(1, 10)) and "road" not in sec["features"]


def _client(url: str, tmp: Path, **kw: object) -> OverpassClient:
    settings = OverpassSettings(
        url + "/api", timeout_s=5, min_interval_s=0.0, max_retries=3, backoff_s=0.0, max_backoff_s=0.0
    )
    return OverpassClient(settings, DiskCache(tmp), sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def _fixture() -> OsmFixture:
    fx = OsmFixture()
    fx.way(1, [(4.41, 43.405), (4.41, 43.425)], {"highway": "primary"})
    fx.way(2, [(4.60, 43.60), (4.61, 43.60)], {"highway": "primary"})  # far away: outside the query box
    return fx


def test_overpass_request_answer_and_cache(tmp_path: Path) -> None:
    q = build_query(FOOTPRINT.bounds, ALL, 5)
    with serve(OverpassHandler, **overpass_attrs(_fixture())) as srv:
        c, n = _client(srv.url, tmp_path), Counter[str]()
        doc = c.query(q, n)
        assert [e["id"] for e in doc["elements"]] == [1]  # filtered by the query's box
        again = _client(srv.url, tmp_path).query(q, n)  # a new client (a rerun): from the disk cache
        assert again == doc
        assert len(srv.log) == 1 and n == Counter(requests=1, cache_hits=1, bytes=n["bytes"])
    r = srv.log[0]
    assert r.path == "/api/interpreter" and r.query == q
    assert r.user_agent.startswith(f"sar-triplets/{__version__} (") and "OpenStreetMap" in r.user_agent


def test_429_then_success(tmp_path: Path) -> None:
    with serve(OverpassHandler, **overpass_attrs(_fixture(), faults=["429"])) as srv:
        n = Counter[str]()
        doc = _client(srv.url, tmp_path).query(build_query(FOOTPRINT.bounds, ALL, 5), n)
    assert [r.status for r in srv.log] == [429, 200] and n["retries"] == 1 and len(doc["elements"]) == 1


def test_busy_garbage_and_incomplete_answers_are_retried_never_cached(tmp_path: Path) -> None:
    q = build_query(FOOTPRINT.bounds, ALL, 5)
    with serve(OverpassHandler, **overpass_attrs(_fixture(), faults=["504", "garbage", "incomplete"])) as srv:
        n = Counter[str]()
        doc = _client(srv.url, tmp_path).query(q, n)
        assert "remark" not in doc and n["requests"] == 4 and n["retries"] == 3
        assert "remark" not in _client(srv.url, tmp_path).query(q, n)  # the cache holds the complete one
    assert [r.status for r in srv.log] == [504, 200, 200, 200]


def test_retries_run_out_with_one_line(tmp_path: Path) -> None:
    with serve(OverpassHandler, **overpass_attrs(_fixture(), faults=["503"] * 4 + ["incomplete"])) as srv:
        with pytest.raises(OverpassError) as e:
            _client(srv.url, tmp_path).query(build_query(FOOTPRINT.bounds, ALL, 5), Counter())
        assert len(srv.log) == 4  # max_retries 3: four attempts, then the error; nothing cached
    msg = str(e.value)
    assert "\n" not in msg and f"{srv.url}/api/interpreter failed 4 time(s), last: HTTP 503" in msg


def test_a_refused_query_is_not_retried(tmp_path: Path) -> None:
    with serve(OverpassHandler, **overpass_attrs(_fixture(), faults=["400"])) as srv:
        with pytest.raises(OverpassError, match=r"refused the query \(HTTP 400: Error : line 3: parse error"):
            _client(srv.url, tmp_path).query("nonsense", Counter())
        assert len(srv.log) == 1


def test_rate_limit_spaces_requests(tmp_path: Path) -> None:
    """The clock is frozen: the limiter must sleep the whole interval before each request but the first.
    Each sleep records how many requests the server had seen: the order, not the wall clock."""
    events: list[tuple[str, float, int]] = []
    with serve(OverpassHandler, **overpass_attrs(_fixture())) as srv:
        limiter = RateLimiter(
            2.5, clock=lambda: 100.0, sleep=lambda s: events.append(("sleep", s, len(srv.log)))
        )
        c = _client(srv.url, tmp_path, limiter=limiter)
        n = Counter[str]()
        for bounds in [(4.40, 43.40, 4.43, 43.43), (4.43, 43.40, 4.46, 43.43), (4.40, 43.40, 4.43, 43.43)]:
            c.query(build_query(bounds, ALL, 5), n)
    assert events == [("sleep", 2.5, 1)]  # before the 2nd request; the 3rd query came from the cache
    assert len(srv.log) == 2 and n["cache_hits"] == 1


# ---------------------------------------------------------------------------------------------- .osm.pbf
def _rich_fixture() -> OsmFixture:
    fx = OsmFixture()
    fx.way(
        1, [(4.41, 43.395), (4.41, 43.425)], {"highway": "primary", "name": "D570"}
    )  # crosses the south edge
    fx.way(2, [(4.405, 43.42), (4.425, 43.42)], {"highway": "secondary", "bridge": "yes", "name": "Pont"})
    fx.way(
        3,
        [(4.402, 43.402), (4.404, 43.402), (4.404, 43.404), (4.402, 43.404)],
        {"building": "yes"},
        closed=True,
    )
    fx.way(
        4,
        [(4.428, 43.40), (4.44, 43.40), (4.44, 43.41), (4.428, 43.41)],
        {"building": "warehouse"},
        closed=True,
    )
    fx.way(5, [(4.412, 43.412), (4.418, 43.412), (4.418, 43.418)], {})
    fx.way(6, [(4.418, 43.418), (4.412, 43.418), (4.412, 43.412)], {})
    fx.way(7, [(4.414, 43.414), (4.416, 43.414), (4.416, 43.416), (4.414, 43.416)], {}, closed=True)
    fx.relations[9] = (
        [("w", 5, "outer"), ("w", 6, "outer"), ("w", 7, "inner")],
        {"type": "multipolygon", "landuse": "farmland"},
    )
    fx.node(10, 4.421, 43.401, man_made="storage_tank", name="T2")
    fx.node(11, 4.422, 43.402, man_made="storage_tank", name="T1")
    fx.way(12, [(4.40, 43.43), (4.43, 43.43)], {"railway": "rail"})  # along the north edge only
    return fx


def test_pbf_gives_the_same_section_as_overpass(tmp_path: Path) -> None:
    fx = _rich_fixture()
    pbf = fx.write_pbf(tmp_path / "x.osm.pbf", bounds=(4.3, 43.3, 4.5, 43.5))
    header = read_header(pbf)
    assert header.bounds == (4.3, 43.3, 4.5, 43.5) and header.snapshot == SNAPSHOT
    from_pbf = summarise(load_pbf(pbf, ALL, (4.3, 43.3, 4.5, 43.5)), FOOTPRINT, to_norm, ALL)
    from_overpass = summarise(_data(fx), FOOTPRINT, to_norm, ALL)
    assert from_pbf["source"] == "pbf" and from_overpass["source"] == "overpass"
    assert {**from_pbf, "source": "-"} == {**from_overpass, "source": "-"}
    f = from_pbf["features"]
    assert set(f) == {"road", "bridge", "building", "farmland", "storage tank"}
    assert f["building"]["count"] == 2 and f["storage tank"]["names"] == ["T1", "T2"]
    assert f["bridge"]["count"] == 1 and f["road"]["count"] == 2 and f["farmland"]["cells"] == [5]


def test_pbf_header_without_bounds_or_snapshot(tmp_path: Path) -> None:
    pbf = _rich_fixture().write_pbf(tmp_path / "nobox.osm.pbf", bounds=None, snapshot=None)
    assert read_header(pbf).bounds is None and read_header(pbf).snapshot is None


def test_classify_lists_each_feature_an_element_stands_for() -> None:
    assert classify({"highway": "primary", "bridge": "yes"}, "way", False, ALL) == [
        ("bridge", "line"),
        ("road", "line"),
    ]
