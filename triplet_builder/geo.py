"""Pixel <-> lon/lat for a scene, whatever georeferences it (affine, GCPs or RPCs).

Built once per scene (`scene_geo` caches it per process) and used by tiling (region intersection),
georeferencing (footprints), embedding (anchor positions) and facts (label projection).
Pixel coordinates here are continuous (row, col) with (0, 0) at the top-left CORNER of the top-left
pixel, as in GDAL; the centre of pixel (i, j) is (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.transform import GCPTransformer, RPCTransformer

from triplet_builder.record import GeorefKind, SceneRef, Window

WGS84 = "EPSG:4326"
_GEOD = Geod(ellps="WGS84")


class SceneGeo:
    """The georeferencing of one scene; holds no open file handles once built."""

    def __init__(self, scene: SceneRef) -> None:
        self.scene = scene
        self.kind = scene.georef
        if scene.transform is not None:  # a virtual scene: the grid is in the SceneRef
            self.affine = Affine(*scene.transform)
            self.inverse = ~self.affine
            self.crs = CRS.from_user_input(scene.crs or "EPSG:4326")
            self._to_ll = Transformer.from_crs(self.crs, WGS84, always_xy=True)
            self._from_ll = Transformer.from_crs(WGS84, self.crs, always_xy=True)
            return
        uri = scene.bands[0].uri
        with rasterio.open(uri) as ds:
            if self.kind is GeorefKind.AFFINE:
                self.affine = ds.transform
                self.inverse = ~ds.transform
                crs = ds.crs
            elif self.kind is GeorefKind.GCPS:
                self._gcps, crs = ds.gcps
            else:
                self._rpcs = ds.rpcs
                crs = CRS.from_epsg(4326)
        self.crs = CRS.from_user_input(crs) if crs is not None else CRS.from_epsg(4326)
        self._to_ll = Transformer.from_crs(self.crs, WGS84, always_xy=True)
        self._from_ll = Transformer.from_crs(WGS84, self.crs, always_xy=True)

    def _transformer(self) -> GCPTransformer | RPCTransformer:
        """A GDAL GCP / RPC transformer, made per call and closed after it (cheap; holding one in a
        process-wide cache crashes GDAL at interpreter shutdown)."""
        return GCPTransformer(self._gcps) if self.kind is GeorefKind.GCPS else RPCTransformer(self._rpcs)

    # -- forward / inverse ---------------------------------------------------------------------------
    def pixel_to_native(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates -> coordinates in the scene's CRS (x, y)."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        if self.kind is GeorefKind.AFFINE:
            a = self.affine
            return a.a * cols + a.b * rows + a.c, a.d * cols + a.e * rows + a.f
        with self._transformer() as tr:
            xs, ys = tr.xy(rows.ravel(), cols.ravel(), offset="ul")
        return np.asarray(xs, dtype=np.float64).reshape(rows.shape), np.asarray(ys, dtype=np.float64).reshape(
            rows.shape
        )

    def pixel_to_lonlat(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.pixel_to_native(rows, cols)
        lon, lat = self._to_ll.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def lonlat_to_pixel(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """lon/lat -> continuous (row, col) in native scene pixels."""
        x, y = self._from_ll.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.kind is GeorefKind.AFFINE:
            inv = self.inverse
            cols = inv.a * x + inv.b * y + inv.c
            rows = inv.d * x + inv.e * y + inv.f
            return rows, cols
        with self._transformer() as tr:
            r, c = tr.rowcol(x.ravel(), y.ravel(), op=lambda v: v)
        return (
            np.asarray(r, dtype=np.float64).reshape(x.shape),
            np.asarray(c, dtype=np.float64).reshape(x.shape),
        )

    # -- windows -------------------------------------------------------------------------------------
    def window_outline(self, window: Window, per_edge: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """lon/lat of points along the window's edges (closed ring, clockwise from top-left)."""
        r0, c0 = float(window.row_off), float(window.col_off)
        r1, c1 = r0 + window.height, c0 + window.width
        t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
        rows = np.concatenate(
            [np.full_like(t, r0), r0 + t * (r1 - r0), np.full_like(t, r1), r1 - t * (r1 - r0)]
        )
        cols = np.concatenate(
            [c0 + t * (c1 - c0), np.full_like(t, c1), c1 - t * (c1 - c0), np.full_like(t, c0)]
        )
        rows = np.append(rows, r0)
        cols = np.append(cols, c0)
        return self.pixel_to_lonlat(rows, cols)

    def chip_pixel_to_lonlat(
        self, window: Window, y: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalized chip positions (y, x) in [0, 1] -> lon/lat."""
        rows = window.row_off + np.asarray(y, dtype=np.float64) * window.height
        cols = window.col_off + np.asarray(x, dtype=np.float64) * window.width
        return self.pixel_to_lonlat(rows, cols)

    def lonlat_to_chip_pixel(
        self, window: Window, lon: np.ndarray, lat: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """lon/lat -> continuous (y, x) in OUTPUT chip pixels (after resampling)."""
        rows, cols = self.lonlat_to_pixel(lon, lat)
        y = (rows - window.row_off) * (window.out_height / window.height)
        x = (cols - window.col_off) * (window.out_width / window.width)
        return y, x

    def window_ground_size_m(self, window: Window) -> tuple[float, float]:
        """(width, height) of the window on the ground in metres, per axis: the geodesic (WGS84) length
        of its middle row from the left edge to the right edge, and of its middle column from the top
        edge to the bottom edge (edge midpoints of the footprint). In a geographic CRS the two differ by
        cos(latitude) for square degree pixels."""
        r0, c0 = float(window.row_off), float(window.col_off)
        r1, c1 = r0 + window.height, c0 + window.width
        rm, cm = (r0 + r1) / 2.0, (c0 + c1) / 2.0
        lon, lat = self.pixel_to_lonlat(np.array([rm, rm, r0, r1]), np.array([c0, c1, cm, cm]))
        _, _, width = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, height = _GEOD.inv(lon[2], lat[2], lon[3], lat[3])
        return float(width), float(height)

    def native_pixel_size_m(self) -> float:
        """Ground distance between neighbouring pixel centres at the scene centre (mean of both axes)."""
        r = self.scene.height / 2.0
        c = self.scene.width / 2.0
        lon, lat = self.pixel_to_lonlat(np.array([r, r, r + 1.0]), np.array([c, c + 1.0, c]))
        _, _, dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])
        return float((abs(dx) + abs(dy)) / 2.0)

    def affine_of_window(self, window: Window) -> tuple[float, float, float, float, float, float] | None:
        """The chip grid's affine in the native CRS (affine scenes only)."""
        if self.kind is not GeorefKind.AFFINE:
            return None
        a = self.affine
        sx = window.width / window.out_width
        sy = window.height / window.out_height
        c = a.a * window.col_off + a.b * window.row_off + a.c
        f = a.d * window.col_off + a.e * window.row_off + a.f
        return (a.a * sx, a.b * sy, c, a.d * sx, a.e * sy, f)


@lru_cache(maxsize=16)
def scene_geo(scene: SceneRef) -> SceneGeo:
    """One SceneGeo per scene per process (a scene's CRS transformer is built once, not per chip)."""
    return SceneGeo(scene)


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS84 / UTM zone EPSG code of a point (standard zones; no Norway/Svalbard exceptions)."""
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def utm_zone_name(lon: float, lat: float) -> str:
    """e.g. '31N', the zone naming of the AlphaEarth COG mirror."""
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return f"{zone}{'N' if lat >= 0 else 'S'}"


def bearing_to_compass(azimuth_deg: float) -> str:
    points = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"]
    return points[int(((azimuth_deg % 360.0) + 22.5) // 45.0) % 8]


def geodesic(lon1: float, lat1: float, lon2: float, lat2: float) -> tuple[float, float]:
    """(forward azimuth in degrees from point 1 to point 2, distance in metres)."""
    az, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return float(az), float(dist)
