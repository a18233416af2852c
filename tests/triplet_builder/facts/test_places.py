"""The named place of a point: real GeoNames look-ups (Rhone mouth, a demo chip, a high-latitude point where
degree-space and geodesic nearest differ), the preference for populous places, no region-named village,
batch queries, limits. Expected places are recomputed here with pyproj.Geod over the package's records."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import rasterio
import reverse_geocode
from pyproj import Geod, Transformer

from triplet_builder.facts import places
from triplet_builder.facts.places import nearest_place, nearest_places

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
CAMARGUE = REAL / "spatialist" / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
PSL_LON, PSL_LAT = 4.82609, 43.38734  # Port-Saint-Louis-du-Rhone in GeoNames
GEOD = Geod(ellps="WGS84")


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def _centre_lonlat(path: Path) -> tuple[float, float]:
    with rasterio.open(path) as ds:
        b = ds.bounds
        tr = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform((b.left + b.right) / 2.0, (b.bottom + b.top) / 2.0)
    return float(lon), float(lat)


def test_real_scene_centre_is_port_saint_louis() -> None:
    lon, lat = _centre_lonlat(PORT)
    p = nearest_place(lon, lat)
    assert p is not None
    assert _ascii(p["name"]) == "port-saint-louis-du-rhone"
    assert p["country"] == "France"
    assert p["country_code"] == "FR"
    assert 0.3 <= p["distance_km"] <= 1.5
    assert p["direction"] == "at"  # under 1 km
    assert p["source"].startswith("GeoNames cities (reverse_geocode ")
    assert isinstance(p["population"], int) and p["population"] > 1000


@pytest.mark.parametrize(("azimuth", "compass"), [(0, "N"), (90, "E"), (180, "S"), (270, "W"), (45, "NE")])
def test_direction_is_from_place_to_point(azimuth: float, compass: str) -> None:
    lon, lat, _ = GEOD.fwd(PSL_LON, PSL_LAT, azimuth, 4000.0)
    p = nearest_place(lon, lat)
    assert p is not None and _ascii(p["name"]) == "port-saint-louis-du-rhone"
    assert p["direction"] == compass
    assert p["distance_km"] == pytest.approx(4.0, abs=0.05)


def test_max_km_and_open_ocean() -> None:
    lon, lat, _ = GEOD.fwd(PSL_LON, PSL_LAT, 180.0, 60_000.0)  # 60 km out in the Gulf of Lion
    assert nearest_place(lon, lat) is None  # default 50 km
    far = nearest_place(lon, lat, max_km=100.0)
    # Port-Saint-Louis is the nearest (60 km); Marseille (67 km, within 1.5 x) is far more populous
    assert (
        far is not None and far["name"] == "Marseille" and far["distance_km"] == pytest.approx(67.4, abs=0.1)
    )
    assert nearest_place(-30.0, -40.0) is None  # South Atlantic
    assert nearest_place(float("nan"), 43.0) is None


def test_batch_queries() -> None:
    lons = [PSL_LON, 2.3522, -30.0, float("nan"), 139.6917]
    lats = [PSL_LAT, 48.8566, -40.0, 10.0, 35.6895]
    out = nearest_places(lons, lats)
    assert len(out) == 5
    assert out[0] is not None and out[0]["country_code"] == "FR"
    assert out[1] is not None and out[1]["name"] == "Paris"
    assert out[2] is None and out[3] is None
    assert out[4] is not None and out[4]["country"] == "Japan"
    assert out == [nearest_place(lo, la) for lo, la in zip(lons, lats, strict=True)]


@cache
def _records() -> tuple[dict[str, Any], ...]:
    """Every record of the package (its own table, read through its own loader)."""
    return tuple(dict(r) for r in reverse_geocode.GeocodeData()._locations)


def expected_place(lon: float, lat: float, max_km: float = 50.0) -> dict[str, Any] | None:
    """The documented rule, recomputed by brute force with pyproj.Geod over every record of the package:
    no region-named small place; of the places within max(2 km, 1.5 x nearest), the most populous."""
    near = [
        r
        for r in _records()
        if abs(r["latitude"] - lat) < 1.0
        and abs(r["longitude"] - lon) < 3.0
        and not (r["city"] == r.get("state") and r["population"] < 100_000)
    ]
    dist = [GEOD.inv(lon, lat, r["longitude"], r["latitude"])[2] / 1000.0 for r in near]
    inside = [(d, r) for d, r in zip(dist, near, strict=True) if d <= max_km]
    if not inside:
        return None
    d0 = min(d for d, _ in inside)
    similar = [(d, r) for d, r in inside if d <= max(2.0, 1.5 * d0)]
    return max(similar, key=lambda dr: (dr[1]["population"], -dr[0]))[1]


def test_geodesic_not_degree_space_nearest_at_high_latitude() -> None:
    """At 65 N a degree of longitude is 47 km but a degree of latitude 111 km: the package's (lat, lon) tree
    names Jaali (6.9 km away), the geodesic nearest place is Talvikangas (3.7 km); Jaali is more populous
    but farther than 1.5 x, so Talvikangas is named."""
    lon, lat = 25.6725, 65.0316
    degree_nearest = reverse_geocode.search([(lat, lon)])[0]
    recs = [r for r in _records() if abs(r["latitude"] - lat) < 1 and abs(r["longitude"] - lon) < 3]
    geodesic_nearest = min(recs, key=lambda r: GEOD.inv(lon, lat, r["longitude"], r["latitude"])[2])
    assert _ascii(degree_nearest["city"]) == "jaali" and geodesic_nearest["city"] == "Talvikangas"
    p = nearest_place(lon, lat)
    assert p is not None and p["name"] == "Talvikangas" and p["distance_km"] == pytest.approx(3.7, abs=0.1)
    assert p["name"] == expected_place(lon, lat)["city"]  # type: ignore[index]


def test_a_more_populous_place_at_a_similar_distance_is_named() -> None:
    """Centre of the Camargue demo tile: Saint-Gilles (13k people) is 11.7 km away, Arles (53k) 12.8 km."""
    lon, lat = _centre_lonlat(CAMARGUE)
    recs = [r for r in _records() if abs(r["latitude"] - lat) < 1 and abs(r["longitude"] - lon) < 3]
    nearest = min(recs, key=lambda r: GEOD.inv(lon, lat, r["longitude"], r["latitude"])[2])
    assert nearest["city"] == "Saint-Gilles"
    p = nearest_place(lon, lat)
    assert p is not None and p["name"] == "Arles" and p["population"] > nearest["population"]
    assert p["distance_km"] < 1.5 * GEOD.inv(lon, lat, nearest["longitude"], nearest["latitude"])[2] / 1000
    # far from any bigger place, the nearest stays: 4 km east of Port-Saint-Louis
    lon4, lat4, _ = GEOD.fwd(PSL_LON, PSL_LAT, 90.0, 4000.0)
    assert _ascii(nearest_place(lon4, lat4)["name"]) == "port-saint-louis-du-rhone"  # type: ignore[index]


def test_a_village_named_like_its_region_is_not_named() -> None:
    """Tavush (1,499 people) is a village of the Armenian province Tavush: a reader takes 'Tavush' for the
    province, so the next place is named; the city Kabul (province Kabul) is kept."""
    tavush = next(r for r in _records() if r["city"] == "Tavush" and r["country_code"] == "AM")
    assert tavush["state"] == "Tavush" and tavush["population"] < 100_000
    p = nearest_place(tavush["longitude"], tavush["latitude"])
    assert p is not None and p["name"] != "Tavush" and p["admin1"] == "Tavush"
    assert p["name"] == expected_place(tavush["longitude"], tavush["latitude"])["city"]  # type: ignore[index]
    kabul = nearest_place(69.17233, 34.52813)
    assert kabul is not None and kabul["name"] == "Kabul" and kabul["admin1"] == "Kabul"


def test_demo_chip_place_is_recomputed_independently() -> None:
    """Every 64 px chip centre of the two 2017 demo tiles (stride 32): the named place is the one the rule
    gives by brute force over the package's records."""
    for path in (CAMARGUE, PORT):
        with rasterio.open(path) as ds:
            t, crs, w, h = ds.transform, ds.crs, ds.width, ds.height
        to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        for r0 in range(0, h - 63, 32):
            for c0 in range(0, w - 63, 32):
                lon, lat = to_ll.transform(t.c + (c0 + 32) * t.a, t.f + (r0 + 32) * t.e)
                p, want = nearest_place(lon, lat), expected_place(lon, lat)
                assert p is not None and want is not None and p["name"] == want["city"], (lon, lat)
                d = GEOD.inv(want["longitude"], want["latitude"], lon, lat)[2] / 1000.0
                assert p["distance_km"] == round(d, 1)


def test_records_of_the_package_are_not_mutated() -> None:
    a = nearest_place(PSL_LON, PSL_LAT)
    assert a is not None
    a["name"] = "changed"
    b = nearest_place(PSL_LON, PSL_LAT)
    assert b is not None and b["name"] != "changed"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="longitudes"):
        nearest_places([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="max_km"):
        nearest_places([1.0], [1.0], max_km=0)


def test_no_work_at_import_time() -> None:
    code = "import sys, triplet_builder.facts.places; print('reverse_geocode' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
    assert places.geocoder_source().endswith(")")
