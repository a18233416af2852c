"""Nearest named place: a real GeoNames look-up at the Rhone mouth, batch queries, limits."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import rasterio
import reverse_geocode
from pyproj import Geod, Transformer

from triplet_builder.facts import places
from triplet_builder.facts.places import nearest_place, nearest_places

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
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
    assert far is not None and far["distance_km"] == pytest.approx(60.0, abs=0.1)
    assert nearest_place(-30.0, -40.0) is None  # South Atlantic
    assert nearest_place(float("nan"), 43.0) is None


def test_batch_queries_the_package_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_search = reverse_geocode.search

    def spy(coords, min_population=0):  # type: ignore[no-untyped-def]
        calls.append(len(coords))
        return real_search(coords, min_population=min_population)

    monkeypatch.setattr(reverse_geocode, "search", spy)
    lons = [PSL_LON, 2.3522, -30.0, float("nan"), 139.6917]
    lats = [PSL_LAT, 48.8566, -40.0, 10.0, 35.6895]
    out = nearest_places(lons, lats)
    assert calls == [4]  # one query, non-finite point left out
    assert len(out) == 5
    assert out[0] is not None and out[0]["country_code"] == "FR"
    assert out[1] is not None and out[1]["name"] == "Paris"
    assert out[2] is None and out[3] is None
    assert out[4] is not None and out[4]["country"] == "Japan"


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
