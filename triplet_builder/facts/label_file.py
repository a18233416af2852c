"""Reading a label file: a CSV of points or a vector file (GeoJSON, GeoPackage, shapefile) in
EPSG:4326, and its values parsed strictly (numbers, UTC times, xView3 booleans, JSON-safe values)."""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def truthy(v: Any) -> bool | None:
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


def json_safe(v: Any) -> Any:
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


def parse_numbers(where: str, df: pd.DataFrame, col: str) -> pd.Series:
    """A column as floats (NaN where empty); a value that is not a number is an error."""
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        raise ValueError(
            f"{where}: column {col!r} holds {int(bad.sum())} value(s) that are not numbers "
            f"(first: {raw[bad].iloc[0]!r}); fix the file or facts.labels.columns"
        )
    return num.astype(float)


def parse_times(where: str, df: pd.DataFrame, col: str) -> np.ndarray:
    """A column as UTC datetime64[ns] (NaT where empty; zone-less times are UTC); bad text is an error."""
    raw = df[col]
    try:
        t = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{where}: column {col!r} is not a time ({e}); use ISO 8601, e.g. 2017-03-09T05:43:56Z"
        ) from None
    bad = t.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        raise ValueError(
            f"{where}: column {col!r} holds {int(bad.sum())} value(s) that are not times "
            f"(first: {raw[bad].iloc[0]!r}); use ISO 8601, e.g. 2017-03-09T05:43:56Z"
        )
    return t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def read_label_file(path: Path) -> tuple[pd.DataFrame, bool]:
    """The label file as a (Geo)DataFrame, and whether it has geometry (else a CSV of lat/lon)."""
    if path.suffix.lower() in (".csv", ".txt"):
        try:
            return pd.read_csv(path), False
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise ValueError(f"label file {path}: cannot read it as CSV ({e}); check the file") from e
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
    return gdf.to_crs("EPSG:4326"), True
