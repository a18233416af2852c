"""ESA WorldCover 10 m maps at points: the public tiled COGs by HTTP range requests, a local folder in the
same tile layout, or one local raster.

The product: EPSG:4326, 3 x 3 degree tiles named by their south-west corner (N42E003 = 42-45 N, 3-6 E),
1/12000 degree pixels, one byte per pixel, `{v100/2020|v200/2021}/map/ESA_WorldCover_10m_{YEAR}_{VER}_{TILE}_Map.tif`
under https://esa-worldcover.s3.eu-central-1.amazonaws.com (s3://esa-worldcover). Only land has tiles: the
list of those that exist is the product's grid file (`v100/2020/esa_worldcover_2020_grid.geojson`, property
`ll_tile`, the same 3-degree grid for both versions). A point in no tile has NO map value (invalid), which is
not the same as "water": the caller states no data, never a class.

Pixels are addressed by GLOBAL integer indices (column from 180 W, row from 90 N, 1/12000 degree each), so a
point takes the pixel whose cell holds it (top-left inclusive, as GDAL indexes) and a point on a tile edge
belongs to exactly one tile. A file that covers only part of its tile is read through its own origin.

Remote reads follow the AlphaEarth COG provider (triplet_builder/embeddings/cog.py): our User-Agent, GDAL's
bounded HTTP retries (triplet_builder.remote), VSI cache, and an on-disk cache of every window read, keyed by
file and window, so a rerun makes no request. Points are read per tile in as few windows as the size limit
allows (one per tile per call when they lie close together), never one request per chip. Callers give
either WGS84 points (`sample`) or map pixels, chip by chip (`pixel_coords`, then `read_pixels`: see
triplet_builder/sources/map_pixels.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from schemas.vocabulary import WORLDCOVER_NODATA, WORLDCOVER_VERSIONS
from triplet_builder.cache import DiskCache
from triplet_builder.remote import HTTP_GDAL_OPTIONS, USER_AGENT, backoff_delay, gdal_env, gdal_path
from triplet_builder.sources.map_pixels import Pixels, floor_index, gather_where

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://esa-worldcover.s3.eu-central-1.amazonaws.com"
PIXELS_PER_DEGREE = 12000
TILE_DEGREES = 3
TILE_PIXELS = TILE_DEGREES * PIXELS_PER_DEGREE
GRID_PATH = "v100/2020/esa_worldcover_2020_grid.geojson"
MAX_WINDOW_PIXELS = 16 * 2**20  # one window read holds at most 16 Mpx (16 MiB of uint8)
_GRID_RETRIES = 4


class MapMissingError(RuntimeError):
    """The map a chip needs is not where the config says (one line: what is missing, how to get it)."""


def map_year(policy: int | str, acquisition_year: int) -> int:
    """The WorldCover map year for a chip: the configured one, or (`nearest`) the closest to its acquisition."""
    if policy != "nearest":
        return int(policy)
    return min(WORLDCOVER_VERSIONS, key=lambda y: (abs(y - acquisition_year), y))


def map_path(year: int, tile: str) -> str:
    """The tile's path under the product root, e.g. v200/2021/map/ESA_WorldCover_10m_2021_v200_N42E003_Map.tif."""
    ver = WORLDCOVER_VERSIONS[int(year)]
    return f"{ver}/{year}/map/ESA_WorldCover_10m_{year}_{ver}_{tile}_Map.tif"


def global_index(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row from 90 N, column from 180 W) of the 1/12000 degree pixel holding each point (clamped to the globe)."""
    col = np.floor((np.asarray(lon, dtype=np.float64) + 180.0) * PIXELS_PER_DEGREE).astype(np.int64)
    row = np.floor((90.0 - np.asarray(lat, dtype=np.float64)) * PIXELS_PER_DEGREE).astype(np.int64)
    return (
        np.clip(row, 0, 180 * PIXELS_PER_DEGREE - 1),
        np.clip(col, 0, 360 * PIXELS_PER_DEGREE - 1),
    )


def tile_of_index(row: int, col: int) -> str:
    """The name of the tile holding global pixel (row, col): its south-west corner, e.g. N42E003, S03W060."""
    lat0 = 90 - TILE_DEGREES * (row // TILE_PIXELS + 1)
    lon0 = -180 + TILE_DEGREES * (col // TILE_PIXELS)
    return f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}"


def tile_name(lon: float, lat: float) -> str:
    """The tile holding a point (a point on a tile edge belongs to the tile east / south of the edge)."""
    r, c = global_index(np.array([lon]), np.array([lat]))
    return tile_of_index(int(r[0]), int(c[0]))


def _is_remote(root: str) -> bool:
    return root.startswith(("http://", "https://", "s3://", "/vsi"))


class WorldCoverTiles:
    """WorldCover class values at WGS84 points from the tile layout under `root` (URL or local folder).

    `sample(lon, lat, year) -> (values uint8 (N,), valid bool (N,))`: valid where a tile exists, holds the
    point and is not no data (0). Raises MapMissingError when a tile that should exist cannot be found.
    """

    def __init__(self, root: str, *, cache_dir: str | None = None, user_agent: str = USER_AGENT) -> None:
        self.root = str(root).rstrip("/")
        self.remote = _is_remote(self.root)
        self.cache_dir = cache_dir
        self.user_agent = user_agent
        self.stats: dict[str, int] = {
            "points": 0,
            "points_no_tile": 0,
            "tiles_opened": 0,
            "window_reads": 0,
            "window_cache_hits": 0,
        }
        self._datasets: dict[str, DatasetReader] = {}
        self._grid: set[str] | None = None
        self._grid_loaded = False

    def __repr__(self) -> str:
        return f"WorldCoverTiles({self.root!r})"

    def close(self) -> None:
        for ds in self._datasets.values():
            ds.close()
        self._datasets.clear()

    # ------------------------------------------------------------------------------------------ setup
    def gdal_options(self) -> dict[str, str]:
        """GDAL settings of a remote root: those of the AlphaEarth COG provider (User-Agent, retries, cache)."""
        if not self.remote:
            return {}
        opts = {
            **HTTP_GDAL_OPTIONS,
            "GDAL_HTTP_USERAGENT": self.user_agent,
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
            "GDAL_HTTP_MULTIPLEX": "YES",
            "VSI_CACHE": "TRUE",
        }
        if self.root.startswith(("s3://", "/vsis3/")):
            opts["AWS_NO_SIGN_REQUEST"] = "YES"
        return opts

    def _cache(self, sub: str) -> DiskCache | None:
        return DiskCache(Path(self.cache_dir) / sub) if self.cache_dir is not None and self.remote else None

    def _http_root(self) -> str:
        if self.root.startswith("s3://"):
            bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
            return f"https://{bucket}.s3.amazonaws.com" + (f"/{prefix}" if prefix else "")
        return self.root

    def tiles(self) -> set[str] | None:
        """The names of the tiles that exist (the product's grid file), or None where the root has no grid
        file (a local folder without it: a missing tile is then missing data, not open sea)."""
        if self._grid_loaded:
            return self._grid
        blob: bytes | None
        if self.remote:
            blob = self._download_grid()
        else:
            p = Path(self.root) / GRID_PATH
            blob = p.read_bytes() if p.is_file() else None
        if blob is not None:
            try:
                features = json.loads(blob)["features"]
                self._grid = {str(f["properties"]["ll_tile"]) for f in features}
            except (ValueError, KeyError, TypeError):
                raise MapMissingError(
                    f"{GRID_PATH} under {self.root} is not the WorldCover grid (GeoJSON features with "
                    "property ll_tile): fetch it again from the product's bucket"
                ) from None
        self._grid_loaded = True
        return self._grid

    def _download_grid(self) -> bytes:
        url = f"{self._http_root()}/{GRID_PATH}"
        cache = self._cache("grid")
        key = hashlib.sha256(url.encode()).hexdigest()
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        req = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        for attempt in range(_GRID_RETRIES + 1):
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    blob: bytes = resp.read()
                break
            except urllib.error.HTTPError as e:
                if e.code in (404, 403):
                    raise MapMissingError(
                        f"the WorldCover grid {url} answered HTTP {e.code}: set the stage's url to the "
                        f"product's bucket ({DEFAULT_URL}) or a mirror of its layout"
                    ) from None
                if e.code not in (429, 500, 502, 503, 504) or attempt == _GRID_RETRIES:
                    raise RuntimeError(f"the WorldCover grid {url} failed: HTTP {e.code}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == _GRID_RETRIES:
                    raise RuntimeError(f"the WorldCover grid {url} cannot be reached: {e}") from None
            time.sleep(backoff_delay(attempt, 1.0, 30.0))
        if cache is not None:
            cache.put(key, blob)
        return blob

    def _open(self, year: int, tile: str) -> DatasetReader:
        rel = map_path(year, tile)
        ds = self._datasets.get(rel)
        if ds is not None:
            return ds
        where = gdal_path(f"{self.root}/{rel}") if self.remote else str(Path(self.root) / rel)
        try:
            ds = rasterio.open(where)
        except RasterioIOError:
            if self.remote:  # listed in the grid, so it exists: an outage or a wrong url, never "no data"
                raise RuntimeError(
                    f"WorldCover {year} tile {Path(rel).name} cannot be read from {self.root} (after GDAL's "
                    "retries): check the stage's url and the network"
                ) from None
            raise MapMissingError(
                f"WorldCover {year} tile {tile} is missing: download {DEFAULT_URL}/{rel} into {self.root} "
                f"(same layout), or put the product's {GRID_PATH} there if the tile is open sea"
            ) from None
        res = ds.transform.a * PIXELS_PER_DEGREE, -ds.transform.e * PIXELS_PER_DEGREE
        if ds.count < 1 or ds.dtypes[0] != "uint8" or not np.allclose(res, 1.0, rtol=1e-6):
            ds.close()
            raise ValueError(
                f"{Path(rel).name} is not a WorldCover map (uint8, north-up 1/{PIXELS_PER_DEGREE} degree pixels)"
            )
        self._datasets[rel] = ds
        self.stats["tiles_opened"] += 1
        return ds

    # ------------------------------------------------------------------------------------------- reads
    def _window(
        self, year: int, tile: str, ds: DatasetReader, r0: int, r1: int, c0: int, c1: int
    ) -> np.ndarray:
        cache = self._cache("windows")
        key = hashlib.sha256(f"{self.root}|{map_path(year, tile)}|{r0},{r1},{c0},{c1}".encode()).hexdigest()
        if cache is not None and (hit := cache.get(key)) is not None:
            self.stats["window_cache_hits"] += 1
            return np.asarray(np.load(io.BytesIO(hit), allow_pickle=False))
        data = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
        self.stats["window_reads"] += 1
        if cache is not None:
            buf = io.BytesIO()
            np.save(buf, data, allow_pickle=False)
            cache.put(key, buf.getvalue())
        return data

    def pixel_coords(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous GLOBAL (row, col) of WGS84 points (NaN where a coordinate is not finite)."""
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        ok = np.isfinite(lon) & np.isfinite(lat)
        rows = (90.0 - np.where(ok, lat, np.nan)) * PIXELS_PER_DEGREE  # global_index, before its floor
        return rows, (np.where(ok, lon, np.nan) + 180.0) * PIXELS_PER_DEGREE

    def sample(self, lon: np.ndarray, lat: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Class values (N,) uint8 (0 where invalid) and validity (N,) of N WGS84 points in map `year`."""
        return self.read_pixels([floor_index(*self.pixel_coords(lon, lat))], year)[0]

    def read_pixels(self, parts: list[Pixels], year: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Values uint8 and validity of global pixels (rows, cols) where ok, part by part (map `year`)."""
        values = [np.zeros(r.size, dtype=np.uint8) for r, _, _ in parts]
        self.stats["points"] += sum(v.size for v in values)
        clamped: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        keys: set[int] = set()
        for rows, cols, ok in parts:
            grow = np.clip(rows, 0, 180 * PIXELS_PER_DEGREE - 1)  # clamped to the globe, as global_index
            gcol = np.clip(cols, 0, 360 * PIXELS_PER_DEGREE - 1)
            tile_key = (grow // TILE_PIXELS) * 1000 + gcol // TILE_PIXELS
            clamped.append((grow, gcol, tile_key))
            k = tile_key if ok.all() else tile_key[ok]
            if k.size:
                keys.update([int(k.min())] if k.min() == k.max() else np.unique(k).tolist())
        if not keys:
            return [(v, np.zeros(v.size, dtype=bool)) for v in values]
        opts = self.gdal_options()
        with gdal_env(**opts) if opts else rasterio.Env():
            known = self.tiles()
            for key in sorted(keys):
                tile = tile_of_index((key // 1000) * TILE_PIXELS, (key % 1000) * TILE_PIXELS)
                sel = [ok & (k == key) for (_, _, ok), (_, _, k) in zip(parts, clamped, strict=True)]
                if known is not None and tile not in known:
                    self.stats["points_no_tile"] += sum(int(m.sum()) for m in sel)  # no data, not a class
                    continue
                got = self._sample_tile(
                    int(year), tile, [(g, c, m) for (g, c, _), m in zip(clamped, sel, strict=True)]
                )
                for v, m, x in zip(values, sel, got, strict=True):
                    v[m] = x[m]
        return [(v, v != WORLDCOVER_NODATA) for v in values]

    def _sample_tile(self, year: int, tile: str, parts: list[Pixels]) -> list[np.ndarray]:
        """Values of global pixels where each part's mask holds, from one tile (0 outside its file)."""
        ds = self._open(year, tile)
        row0 = round((90.0 - ds.transform.f) * PIXELS_PER_DEGREE)  # the file's first pixel, global index
        col0 = round((ds.transform.c + 180.0) * PIXELS_PER_DEGREE)
        local = []
        for grow, gcol, m in parts:
            rows, cols = grow - row0, gcol - col0
            local.append((rows, cols, m & (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)))

        def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            return self._window(year, tile, ds, r0, r1, c0, c1)

        return gather_where(local, read, np.uint8, np.uint8, max_pixels=MAX_WINDOW_PIXELS)


class LocalMap:
    """Class values at WGS84 points from ONE local raster (any CRS: a downloaded tile, a mosaic, a clip).

    Valid where the raster covers the point with a value that is neither its nodata nor WorldCover's 0."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.stats: dict[str, int] = {"points": 0, "window_reads": 0}
        self._ds: DatasetReader | None = None
        self._to_map: Transformer | None = None

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def _open(self) -> DatasetReader:
        if self._ds is None:
            try:
                ds = rasterio.open(self.path)
            except RasterioIOError:
                raise MapMissingError(
                    f"land-cover raster {Path(self.path).name} cannot be opened: give a GeoTIFF of the map "
                    f"(e.g. a WorldCover tile from {DEFAULT_URL})"
                ) from None
            if ds.crs is None or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
                ds.close()
                raise ValueError(
                    f"{Path(self.path).name} is not a categorical map with a CRS (integer classes, georeferenced)"
                )
            self._ds = ds
            self._to_map = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        return self._ds

    def pixel_coords(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (row, col) in the raster of WGS84 points (not finite where the CRS cannot place one)."""
        ds = self._open()
        assert self._to_map is not None
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        x, y = self._to_map.transform(lon, lat)
        inv = ~ds.transform
        x, y = np.asarray(x), np.asarray(y)
        return inv.d * x + inv.e * y + inv.f, inv.a * x + inv.b * y + inv.c

    def sample(self, lon: np.ndarray, lat: np.ndarray, year: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Values (N,) and validity (N,) of N WGS84 points (`year` is ignored: the file is one map)."""
        return self.read_pixels([floor_index(*self.pixel_coords(lon, lat))])[0]

    def _read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        assert self._ds is not None
        self.stats["window_reads"] += 1
        return np.asarray(self._ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)))

    def read_pixels(self, parts: list[Pixels], year: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Values (int64) and validity of raster pixels (rows, cols) where ok, part by part."""
        ds = self._open()
        self.stats["points"] += sum(r.size for r, _, _ in parts)
        inside = [ok & (r >= 0) & (r < ds.height) & (c >= 0) & (c < ds.width) for r, c, ok in parts]
        local = [(r, c, m) for (r, c, _), m in zip(parts, inside, strict=True)]
        values = gather_where(local, self._read_window, ds.dtypes[0], np.int64, max_pixels=MAX_WINDOW_PIXELS)
        out = []
        for v, m in zip(values, inside, strict=True):
            valid = m & (v != WORLDCOVER_NODATA)
            if ds.nodata is not None:
                valid &= v != ds.nodata
            out.append((v, valid))
        return out


__all__ = [
    "DEFAULT_URL",
    "GRID_PATH",
    "LocalMap",
    "MapMissingError",
    "WorldCoverTiles",
    "global_index",
    "map_path",
    "map_year",
    "tile_name",
    "tile_of_index",
]
