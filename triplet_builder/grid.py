"""The Major TOM global grid (Francis & Czerkawski 2024, arXiv 2402.12095): cells about D km apart
named like '433U_874R', so chips line up with Major TOM datasets.

Rows are latitude bands of equal arc length D on a sphere of the equatorial radius, counted up (U) from
the equator (row 0U starts at 0 deg) and down (D) below it. Each row is cut into columns of about D km
at the row's own (lower) latitude, counted right (R) from the prime meridian and left (L) of it. A cell
is named after its lower-left corner.
"""

from __future__ import annotations

import math

import shapely
from shapely.geometry.base import BaseGeometry

RADIUS_EQUATOR_KM = 6378.137


def _row_spacing_deg(dist_km: float) -> float:
    return 180.0 / math.ceil(math.pi * RADIUS_EQUATOR_KM / dist_km)


def _col_spacing_deg(row_lat: float, dist_km: float) -> float:
    circumference = 2.0 * math.pi * RADIUS_EQUATOR_KM * math.cos(math.radians(row_lat))
    return 360.0 / max(1, math.ceil(circumference / dist_km))


def grid_cell(lon: float, lat: float, dist_km: float = 10.0) -> str:
    """Name of the Major TOM cell holding (lon, lat)."""
    ds = _row_spacing_deg(dist_km)
    row = math.floor(lat / ds + 1e-12)
    row_lat = row * ds
    dc = _col_spacing_deg(row_lat, dist_km)
    col = math.floor(lon / dc + 1e-12)
    r = f"{row}U" if row >= 0 else f"{-row}D"
    c = f"{col}R" if col >= 0 else f"{-col}L"
    return f"{r}_{c}"


def cell_bounds(name: str, dist_km: float = 10.0) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) of a named cell."""
    r, c = name.split("_")
    row = int(r[:-1]) * (1 if r[-1] == "U" else -1)
    col = int(c[:-1]) * (1 if c[-1] == "R" else -1)
    ds = _row_spacing_deg(dist_km)
    row_lat = row * ds
    dc = _col_spacing_deg(row_lat, dist_km)
    return (col * dc, row_lat, (col + 1) * dc, row_lat + ds)


def cells_touched(geom: BaseGeometry, dist_km: float = 10.0) -> list[str]:
    """Names (sorted) of the cells whose interior the geometry's interior meets.

    A geometry that only lies on a cell's border line does not touch that cell: touching is sharing
    area, i.e. at least a piece of a pixel. Floating-point doubt at a border counts as touching (the
    safe side for a split guard). Cells are closed boxes of the grid's own corners, so the cells of two
    geometries with disjoint touched sets can share border lines but no area.
    """
    if geom.is_empty:
        return []
    xmin, ymin, xmax, ymax = geom.bounds
    ds = _row_spacing_deg(dist_km)
    shapely.prepare(geom)
    names = []
    # one row / column of margin each side: a bound within rounding of a border is checked, not guessed
    for row in range(math.floor(ymin / ds) - 1, math.floor(ymax / ds) + 2):
        row_lat = row * ds
        dc = _col_spacing_deg(row_lat, dist_km)
        for col in range(math.floor(xmin / dc) - 1, math.floor(xmax / dc) + 2):
            cell = shapely.box(col * dc, row_lat, (col + 1) * dc, row_lat + ds)
            if geom.relate_pattern(cell, "T********"):
                r = f"{row}U" if row >= 0 else f"{-row}D"
                c = f"{col}R" if col >= 0 else f"{-col}L"
                names.append(f"{r}_{c}")
    return sorted(names)
