"""The nearest named populated place of a point, offline, from the GeoNames cities (population >= 1000
or seat of an administrative division) bundled with the `reverse_geocode` package.

The package builds its KD-tree once per process, on first use (never at import time here). Its tree is
built in (lat, lon) degrees, so "nearest" is nearest in degree space; the reported distance and
direction are geodesic (WGS84). Call `nearest_places` with all the points of a task at once.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from triplet_builder.geo import bearing_to_compass, geodesic

logger = logging.getLogger(__name__)

DEFAULT_MAX_KM = 50.0
AT_KM = 1.0  # closer than this: direction "at"


@cache
def geocoder_source() -> str:
    """The "source" string of place facts, e.g. 'GeoNames cities (reverse_geocode 1.6.6)'."""
    try:
        version = importlib.metadata.version("reverse_geocode")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
        version = "unknown version"
    return f"GeoNames cities (reverse_geocode {version})"


def _search(coords: list[tuple[float, float]], min_population: int) -> list[dict[str, Any]]:
    import reverse_geocode  # lazy: loading the bundled GeoNames table takes about a second

    # The package returns its own (shared, mutable) records: copy them.
    return [dict(r) for r in reverse_geocode.search(coords, min_population=min_population)]


def _opt_str(v: Any) -> str | None:
    return str(v) if v not in (None, "") else None


def _place_fact(lon: float, lat: float, rec: dict[str, Any], max_km: float) -> dict[str, Any] | None:
    p_lon, p_lat = float(rec["longitude"]), float(rec["latitude"])
    az, dist_m = geodesic(p_lon, p_lat, lon, lat)  # FROM the place TO the point
    dist_km = dist_m / 1000.0
    if dist_km > max_km:
        return None
    pop = rec.get("population")
    return {
        "name": str(rec["city"]),
        "admin1": _opt_str(rec.get("state")),
        "admin2": _opt_str(rec.get("county")),
        "country": str(rec.get("country") or rec.get("country_code") or ""),
        "country_code": _opt_str(rec.get("country_code")),
        "population": int(pop) if pop is not None else None,
        "distance_km": round(dist_km, 1),
        "direction": "at" if dist_km < AT_KM else bearing_to_compass(az),
        "source": geocoder_source(),
    }


def nearest_places(
    lons: Sequence[float] | np.ndarray,
    lats: Sequence[float] | np.ndarray,
    max_km: float = DEFAULT_MAX_KM,
    min_population: int = 0,
) -> list[dict[str, Any] | None]:
    """Facts "place" objects for many points in ONE query of the package; None for a point whose
    nearest place is farther than max_km, or whose coordinates are not finite."""
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
    coords = [(float(lat_a[i]), float(lon_a[i])) for i in idx]
    for i, rec in zip(idx, _search(coords, min_population), strict=True):
        out[i] = _place_fact(float(lon_a[i]), float(lat_a[i]), rec, max_km)
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
