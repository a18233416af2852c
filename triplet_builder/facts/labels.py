"""Object labels from a vector file (GeoJSON, GeoPackage, shapefile: points or polygons with a class
column) or a CSV of points (xView3 `detect_lat` / `detect_lon`, or `lat` / `lon`, `latitude` /
`longitude`), projected into the OUTPUT pixels of a chip as facts "objects" items.

Load a `LabelSet` once per task; it keeps the labels in EPSG:4326 with a spatial index, so each chip
only projects the labels that intersect its footprint.
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from triplet_builder.facts.surface import cell_of
from triplet_builder.geo import SceneGeo
from triplet_builder.record import Window

logger = logging.getLogger(__name__)

LAT_LON_COLUMNS = (("detect_lat", "detect_lon"), ("lat", "lon"), ("latitude", "longitude"))
CLASS_COLUMNS = ("class", "label", "category", "class_name", "type", "name")
LENGTH_COLUMNS = ("vessel_length_m", "length_m")
XVIEW3_CLASS = "xview3"  # pseudo class column: is_vessel / is_fishing
DEFAULT_POINT_BOX_PX = 3
_EPS = 1e-6  # pixel tolerance when rounding projected edges


def _find_column(columns: list[str], wanted: str) -> str | None:
    lower = {c.lower(): c for c in columns}
    return lower.get(wanted.lower())


def _truthy(v: Any) -> bool | None:
    """xView3 booleans come as True/False, 1/0, 'True'/'False' or empty (unknown)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "t", "1", "yes"):
            return True
        if s in ("false", "f", "0", "no"):
            return False
        return None
    return bool(v)


def _json_safe(v: Any) -> Any:
    """A column value as a JSON value: numpy scalars unwrapped, NaN / NaT -> None, dates as ISO text."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, (datetime, date, pd.Timestamp)):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def _read(path: Path) -> tuple[gpd.GeoDataFrame, tuple[str, str] | None]:
    """Read a label file as a GeoDataFrame in EPSG:4326, and the lat/lon columns of a CSV."""
    if path.suffix.lower() in (".csv", ".txt"):
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise ValueError(f"label file {path}: cannot read it as CSV ({e}); check the file") from e
        cols = [str(c) for c in df.columns]
        for lat_name, lon_name in LAT_LON_COLUMNS:
            lat_c, lon_c = _find_column(cols, lat_name), _find_column(cols, lon_name)
            if lat_c and lon_c:
                lat = pd.to_numeric(df[lat_c], errors="coerce")
                lon = pd.to_numeric(df[lon_c], errors="coerce")
                bad = ~(np.isfinite(lat) & np.isfinite(lon))
                if bad.any():
                    logger.warning(
                        "label file %s: %d rows without numeric lat/lon skipped", path, int(bad.sum())
                    )
                df = df.loc[~bad]
                geom = gpd.points_from_xy(lon.loc[~bad], lat.loc[~bad])
                return gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326"), (lat_c, lon_c)
        pairs = ", ".join(f"{a}/{b}" for a, b in LAT_LON_COLUMNS)
        raise ValueError(
            f"label file {path}: no latitude/longitude columns found (looked for {pairs}; "
            f"columns are {cols}); rename them or convert the file to GeoJSON"
        )
    try:
        gdf = gpd.read_file(path)
    except (OSError, ValueError, RuntimeError) as e:  # pyogrio's DataSourceError etc. are RuntimeErrors
        raise ValueError(
            f"label file {path}: cannot read it ({type(e).__name__}: {e}); check the format"
        ) from e
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise ValueError(
            f"label file {path}: has no geometry column; use a vector file or a CSV with lat/lon"
        )
    if gdf.crs is None:
        logger.warning("label file %s has no CRS; assuming lon/lat (EPSG:4326)", path)
        gdf = gdf.set_crs("EPSG:4326")
    return gdf.to_crs("EPSG:4326"), None


class LabelSet:
    """Labelled objects of one label file, in EPSG:4326, with a spatial index."""

    def __init__(
        self,
        gdf: gpd.GeoDataFrame,
        source: str,
        labels: list[str],
        lengths: list[float | None],
        attributes: list[dict[str, Any]],
        point_box_m: float | None = None,
    ) -> None:
        self.gdf = gdf.reset_index(drop=True)  # EPSG:4326
        self.source = source
        self.labels = labels
        self.lengths = lengths
        self.attributes = attributes
        self.point_box_m = point_box_m
        self.sindex = self.gdf.sindex  # built once here

    def __len__(self) -> int:
        return len(self.gdf)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        class_column: str | None = None,
        default_label: str = "object",
        point_box_m: float | None = None,
    ) -> LabelSet:
        """Load a label file. class_column None: xView3 (is_vessel / is_fishing) or a column named
        class / label / category / class_name / type / name; if none exists every object gets
        default_label. point_box_m: box size of point labels (default: their length, else 3 pixels)."""
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"label file {p} not found; fix facts.labels.path")
        if point_box_m is not None and not point_box_m > 0:
            raise ValueError(f"label file {p}: point_box_m must be > 0, got {point_box_m}")
        gdf, latlon = _read(p)
        gdf = gdf.loc[gdf.geometry.notna() & ~gdf.geometry.is_empty]
        cols = [str(c) for c in gdf.columns if c != gdf.geometry.name]

        if class_column is not None:
            found = _find_column(cols, class_column)
            if found is None:
                raise ValueError(
                    f"label file {p}: class column {class_column!r} not found (columns are {cols}); "
                    "fix facts.labels.class_column"
                )
            cls_col: str | None = found
        elif _find_column(cols, "is_vessel"):
            cls_col = XVIEW3_CLASS
        else:
            cls_col = next((c for name in CLASS_COLUMNS if (c := _find_column(cols, name))), None)
            if cls_col is None:
                logger.warning("label file %s: no class column found; every object is %r", p, default_label)

        len_col = next((c for name in LENGTH_COLUMNS if (c := _find_column(cols, name))), None)
        used = {c for c in (cls_col, len_col, *(latlon or ())) if c}
        if cls_col == XVIEW3_CLASS:
            used |= {c for c in (_find_column(cols, "is_vessel"), _find_column(cols, "is_fishing")) if c}
        attr_cols = [c for c in cols if c not in used]

        records = gdf.to_dict("records")
        labels = [_label_of(r, cls_col, cols, default_label) for r in records]
        lengths: list[float | None] = []
        for r in records:
            v = _json_safe(r[len_col]) if len_col else None
            try:
                lengths.append(float(v) if v is not None and float(v) > 0 else None)
            except (TypeError, ValueError):
                lengths.append(None)
        attributes = [{c: _json_safe(r[c]) for c in attr_cols} for r in records]
        logger.info("label file %s: %d objects, class column %s", p, len(records), cls_col)
        return cls(gdf, p.name, labels, lengths, attributes, point_box_m)

    def objects_in_chip(
        self, geo: SceneGeo, window: Window, footprint: BaseGeometry, pixel_size_m: float | None = None
    ) -> list[dict[str, Any]]:
        """Facts "objects" items for the labels intersecting `footprint` (lon/lat), ordered by (y1, x1).

        pixel_size_m is the chip's (output) pixel size, used to size point boxes; by default it is
        derived from the scene and the window's resampling."""
        hits = self.sindex.query(footprint, predicate="intersects")
        if len(hits) == 0:
            return []
        if pixel_size_m is None:
            pixel_size_m = geo.native_pixel_size_m() * window.width / window.out_width
        w, h = window.out_width, window.out_height
        out: list[dict[str, Any]] = []
        for i in sorted(int(k) for k in hits):
            geom = self.gdf.geometry.iloc[i]
            length = self.lengths[i]
            if geom.geom_type == "Point":
                y, x = geo.lonlat_to_chip_pixel(window, np.array([geom.x]), np.array([geom.y]))
                size_m = self.point_box_m or length
                half = (size_m / pixel_size_m if size_m else DEFAULT_POINT_BOX_PX) / 2.0
                xc, yc = float(x[0]), float(y[0])
                x1, x2 = math.floor(xc - half + 0.5), math.floor(xc + half + 0.5)
                y1, y2 = math.floor(yc - half + 0.5), math.floor(yc + half + 0.5)
                x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
            else:
                xy = np.asarray(_coords(geom))  # (K, 2) lon, lat
                y, x = geo.lonlat_to_chip_pixel(window, xy[:, 0], xy[:, 1])
                x1, x2 = math.floor(float(x.min()) + _EPS), math.ceil(float(x.max()) - _EPS)
                y1, y2 = math.floor(float(y.min()) + _EPS), math.ceil(float(y.max()) - _EPS)
            x1, x2 = max(x1, 0), min(x2, w)
            y1, y2 = max(y1, 0), min(y2, h)
            if x2 <= x1 or y2 <= y1:
                continue
            out.append(
                {
                    "label": self.labels[i],
                    "bbox": [int(x1), int(y1), int(x2), int(y2)],
                    "cell": cell_of((x1 + x2) / 2.0, (y1 + y2) / 2.0, w, h),
                    "length_m": length,
                    "source": self.source,
                    "attributes": dict(self.attributes[i]),
                }
            )
        out.sort(key=lambda d: (d["bbox"][1], d["bbox"][0]))
        return out


def _label_of(rec: dict[str, Any], cls_col: str | None, cols: list[str], default: str) -> str:
    if cls_col is None:
        return default
    if cls_col == XVIEW3_CLASS:
        vessel = _truthy(rec.get(_find_column(cols, "is_vessel") or ""))
        fishing_col = _find_column(cols, "is_fishing")
        fishing = _truthy(rec.get(fishing_col)) if fishing_col else None
        if vessel is False:
            return "non-vessel object"
        if fishing:
            return "fishing vessel"
        return "vessel" if vessel else default
    v = _json_safe(rec.get(cls_col))
    return str(v) if v not in (None, "") else default


def _coords(geom: BaseGeometry) -> list[tuple[float, float]]:
    """All vertices of a geometry (polygon exteriors, lines, multi-parts)."""
    if isinstance(geom, Polygon):
        return [(float(x), float(y)) for x, y, *_ in geom.exterior.coords]
    if hasattr(geom, "geoms"):
        return [c for part in geom.geoms for c in _coords(part)]
    return [(float(x), float(y)) for x, y, *_ in geom.coords]
