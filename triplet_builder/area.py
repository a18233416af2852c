"""The region's area as one lon/lat polygon: a bbox, or the union of a vector file's shapes."""

from __future__ import annotations

import geopandas as gpd
from shapely.geometry.base import BaseGeometry

from triplet_builder.config import AreaConfig, ConfigError
from triplet_builder.footprint import bbox_polygon


def area_polygon(area: AreaConfig) -> BaseGeometry:
    """The area in lon/lat; a bbox with west > east crosses the antimeridian (two boxes)."""
    if area.bbox is not None:
        return bbox_polygon(*area.bbox)
    assert area.path is not None
    try:
        gdf = gpd.read_file(area.path)
    except Exception as e:  # pyogrio raises several types for unreadable files
        raise ConfigError(
            f"area.path {area.path} is not a readable vector file ({type(e).__name__}): use GeoJSON, GeoPackage or a shapefile"
        ) from None
    if gdf.empty:
        raise ConfigError(f"area.path {area.path} holds no shapes: draw the area of interest")
    if gdf.crs is None:
        raise ConfigError(f"area.path {area.path} has no CRS: save it with one (e.g. EPSG:4326)")
    geom = gdf.to_crs("EPSG:4326").geometry.make_valid().union_all()
    if geom.is_empty or geom.area == 0:
        raise ConfigError(f"area.path {area.path} has no area (points or lines only): give polygons")
    return geom
