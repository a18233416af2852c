"""Which AlphaEarth tile serves a point: the tiles of a year from the mirror's index, and their ranking.

The mirror's tiles overlap at UTM zone borders, so a point may lie in several. Each point is served by
its own UTM zone's tile first, then by the most interior one (`covering_tiles`); the pixel-edge rule
(`EDGE_EPS`) is shared by every provider so that the COG and Earth Engine paths pick the same pixel.

`year_tiles` reads the index of one root and year once per process (a Dask worker builds a provider per
task, and the public mirror's index is about 70 MB), keyed by the index file's identity (path, size,
mtime), so a rebuilt index is read again.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from triplet_builder.embeddings.index import index_location, load_index, resolve_path

EDGE_EPS = 1e-6  # pixels (10 um): float noise of a lon/lat round trip is ~1e-9 m
_ZONE = re.compile(r"^(?P<zone>\d{1,2})(?P<hemi>[NS])$")


def zone_code(zone: str) -> int:
    """'13N' -> 26, '13S' -> 27 (a comparable integer); -1 when the string is not a UTM zone."""
    m = _ZONE.match(zone)
    if m is None:
        return -1
    return int(m["zone"]) * 2 + (m["hemi"] == "S")


def point_zone_codes(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The standard UTM zone of each point as `zone_code` integers (no Norway / Svalbard exceptions)."""
    zone = np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)
    return zone * 2 + (np.asarray(lat) < 0)


@dataclass(frozen=True)
class YearTiles:
    """The tiles of one year: GDAL paths, zone codes, WGS84 boxes (T, 4) and an STRtree over the boxes."""

    paths: list[str]
    zones: np.ndarray
    boxes: np.ndarray
    tree: shapely.STRtree


# (index file, size, mtime, root, year) -> its tiles: read-only once built, shared by the providers of a process
_CACHE: dict[tuple[Any, ...], YearTiles] = {}
_LOCK = threading.Lock()


def year_tiles(root: str, year: int, *, user_agent: str, cache_dir: str | None) -> YearTiles:
    """The tiles of `year` under `root`, from the process-wide cache or its index.
    Raises ValueError when the index has no tile for `year`."""
    year = int(year)
    where = index_location(root, cache_dir=cache_dir, user_agent=user_agent)
    st = where.stat()
    key = (str(where), st.st_size, st.st_mtime_ns, root, year)
    with _LOCK:
        tiles = _CACHE.get(key)
    if tiles is not None:
        return tiles
    gdf = load_index(root, year=year, user_agent=user_agent, cache_dir=cache_dir)
    gdf = gdf[gdf["year"] == year]
    if len(gdf) == 0:
        raise ValueError(f"no AlphaEarth tiles for year {year} in the index of {root}")
    boxes = gdf[["wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"]].to_numpy(dtype=np.float64)
    tiles = YearTiles(
        paths=[resolve_path(root, p) for p in gdf["path"]],
        zones=np.array([zone_code(str(z)) for z in gdf["utm_zone"]], dtype=np.int64),
        boxes=boxes,
        tree=shapely.STRtree(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])),
    )
    with _LOCK:
        _CACHE[key] = tiles
    return tiles


def covering_tiles(
    tiles: YearTiles, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, tile, rank) of every tile whose WGS84 box holds a finite point, sorted by point then rank:
    rank 0 is the point's own UTM zone's tile (the most interior one of several), then the others from
    the most interior out."""
    finite = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
    empty = np.zeros(0, dtype=np.int64)
    if finite.size == 0:
        return empty, empty, empty
    p_local, t = tiles.tree.query(shapely.points(lon[finite], lat[finite]), predicate="intersects")
    if p_local.size == 0:
        return empty, empty, empty
    p = finite[p_local]
    own = tiles.zones[t] == point_zone_codes(lon[p], lat[p])
    b = tiles.boxes[t]
    half_w = np.maximum((b[:, 2] - b[:, 0]) / 2, 1e-12)
    half_h = np.maximum((b[:, 3] - b[:, 1]) / 2, 1e-12)
    off_centre = np.maximum(
        np.abs(lon[p] - (b[:, 0] + b[:, 2]) / 2) / half_w,
        np.abs(lat[p] - (b[:, 1] + b[:, 3]) / 2) / half_h,
    )
    order = np.lexsort((t, off_centre, ~own, p))
    p, t = p[order], t[order]
    first = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    rank = np.arange(p.size) - np.repeat(first, np.diff(np.r_[first, p.size]))
    return p, t, rank
