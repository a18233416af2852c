"""Lon/lat footprints and bboxes that stay right across the antimeridian.

A ring of lon/lat points whose consecutive longitudes jump by more than 180 degrees crosses the
antimeridian: read naively it becomes a polygon spanning the globe (and a bbox of [-180, 180]). Such a
ring is split at 180 degrees into a MultiPolygon (the maintained `antimeridian` library), and its bbox
follows RFC 7946 section 5 (west > east means crossing), as GeoParquet's bbox covering does. A ring that
does not cross is built exactly as before (same vertices, same WKB).
"""

from __future__ import annotations

import antimeridian
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry


def crosses_antimeridian(lon: np.ndarray) -> bool:
    """True when consecutive longitudes of the (closed) ring jump by more than 180 degrees."""
    lon = np.asarray(lon, dtype=np.float64)
    return bool(lon.size > 1 and np.any(np.abs(np.diff(lon)) > 180.0))


def lonlat_polygon(lon: np.ndarray, lat: np.ndarray) -> BaseGeometry:
    """The footprint of a lon/lat ring: a Polygon, or a MultiPolygon split at the antimeridian."""
    poly = Polygon(np.column_stack([lon, lat]))
    if not crosses_antimeridian(lon):
        return poly
    fixed = antimeridian.fix_polygon(poly, fix_winding=True, great_circle=False)
    return shapely.normalize(fixed)


def lonlat_bbox(geom: BaseGeometry) -> tuple[float, float, float, float]:
    """(west, south, east, north); west > east when the geometry is split at the antimeridian."""
    if isinstance(geom, MultiPolygon) and _touches_both_sides(geom):
        w, s, e, n = antimeridian.bbox(geom)
        return float(w), float(s), float(e), float(n)
    return tuple(float(v) for v in geom.bounds)  # type: ignore[return-value]


def _touches_both_sides(geom: MultiPolygon) -> bool:
    xmin, _, xmax, _ = geom.bounds
    return xmin <= -180.0 + 1e-9 and xmax >= 180.0 - 1e-9


def bbox_polygon(west: float, south: float, east: float, north: float) -> BaseGeometry:
    """A region bbox as geometry: west > east crosses the antimeridian and gives two boxes."""
    if west < east:
        return box(west, south, east, north)
    return MultiPolygon([box(west, south, 180.0, north), box(-180.0, south, east, north)])


def parts(geom: BaseGeometry) -> list[BaseGeometry]:
    """The polygons of a Polygon or MultiPolygon (each part is handled on its own side of 180)."""
    return list(getattr(geom, "geoms", [geom]))
