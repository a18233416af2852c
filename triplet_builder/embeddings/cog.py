"""Point and grid reads of AlphaEarth embeddings from Cloud-Optimized GeoTIFFs in the mirror layout.

`CogEmbeddingProvider(root)` reads `{root}/aef_index.parquet` and the tiles it lists (local folder,
https:// or s3:// root; see triplet_builder.embeddings.index). It returns raw int8 codes plus a
validity mask; de-quantize with triplet_builder.embeddings.quantize.dequantize.

Orientation: the public files are stored bottom-up (positive y pixel size, raw row 0 is the SOUTH
edge). Pixel positions are therefore always computed through the inverse of the dataset's affine,
never by assuming north-up rows, and grids are read through a WarpedVRT.

Cost: a COG is read by internal block (1024 x 1024 px per band in the public files; all 64
band-blocks are decoded for any pixel of the block). Points are grouped by file and by block, each
group is served by ONE read of the whole block (all 64 bands), blocks in the order of the last point
that needs each (the next task's chips start where this task's end). What a read keeps is the lattice
of the block its points lie on (the chips' anchor grid: 1/256 of the block for 16 x 16 anchors of
256 px chips, the whole block for scattered points), in a process-wide LRU bounded by bytes
(`BlockCache`, keyed by file identity and block), so a later call on that lattice reads nothing, from
the same provider or from another one: a Dask worker builds a provider per task, and neighbouring
tasks of a scene share the blocks on their border. `provider.stats` counts the reads, and
`drain_counters` reports them to the manifest.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from triplet_builder.cache import DiskCache
from triplet_builder.embeddings.block_cache import CachedWindow, block_cache, lattice_of
from triplet_builder.embeddings.index import is_remote
from triplet_builder.embeddings.quantize import NODATA
from triplet_builder.embeddings.tiles import EDGE_EPS, YearTiles, covering_tiles, point_zone_codes, year_tiles
from triplet_builder.portable import portable_uri
from triplet_builder.remote import HTTP_GDAL_OPTIONS, USER_AGENT, gdal_env

logger = logging.getLogger(__name__)

N_BANDS = 64


class EmbeddingTileError(ValueError):
    """An AlphaEarth tile that cannot be read (corrupt, truncated, wrong bands); names the tile by its
    path under the embeddings root (or its URL), never by basename alone, and says what to do."""


DEFAULT_CACHE_BYTES = 256 * 2**20
_SOURCE_COOP_BUCKET = re.compile(r"^(?P<region>[a-z]{2}-[a-z]+-\d)\.opendata\.source\.coop$")
_DRAINED = ("block_reads", "cache_hits")


class CogEmbeddingProvider:
    """AlphaEarth embeddings at points (and on grids) from COG tiles in the mirror layout.

    Picklable: datasets open lazily on first use, and a pickled provider carries only its settings
    and counters (no handles, no cached pixels). Thread-safe through one lock per provider.
    """

    def __init__(
        self,
        root: str,
        *,
        synthetic: bool = False,
        user_agent: str = USER_AGENT,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_dir: str | None = None,
    ) -> None:
        self.root = str(root)
        self.cache_dir = cache_dir  # where a remote root's index is downloaded once (None: the default)
        self.synthetic = synthetic
        self.user_agent = user_agent
        self.cache_bytes = int(cache_bytes)
        self.description = f"cog:{portable_uri(self.root)}" + (" (SYNTHETIC)" if synthetic else "")
        self.stats: dict[str, int] = {
            "calls": 0,
            "points": 0,
            "points_valid": 0,
            "files_opened": 0,
            "block_reads": 0,
            "cache_hits": 0,
            "pixels_read": 0,
            "grid_reads": 0,
        }
        self._init_runtime()

    # ----------------------------------------------------------------------------------- state
    def _init_runtime(self) -> None:
        self._lock = threading.RLock()
        self._datasets: dict[str, DatasetReader] = {}
        self._years: dict[int, YearTiles] = {}
        self._transformers: dict[str, Transformer] = {}
        self._file_ids: dict[str, tuple[Any, ...]] = {}  # path -> its identity in the block cache keys
        self._drained: dict[str, int] = {}  # stats at the last drain_counters

    def __getstate__(self) -> dict[str, Any]:
        keep = ("root", "synthetic", "user_agent", "cache_bytes", "cache_dir", "description", "stats")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stats = dict(self.stats)
        self._init_runtime()
        # the counts from before pickling are the original's to report, not this copy's
        self._drained = {k: self.stats.get(k, 0) for k in _DRAINED}

    def __repr__(self) -> str:
        return f"CogEmbeddingProvider({self.root!r}, synthetic={self.synthetic})"

    def __enter__(self) -> CogEmbeddingProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open dataset (the provider stays usable). The decompressed blocks stay in the
        process-wide cache for the next task's provider; `clear_block_caches` drops them."""
        with self._lock:
            for ds in self._datasets.values():
                ds.close()
            self._datasets.clear()
            self._file_ids.clear()

    def drain_counters(self) -> dict[str, int]:
        """Block reads and block-cache hits since the last call (for the Embed stage's Stats.extra, so the
        manifest says how often the build decompressed a block), prefixed `cog_`."""
        with self._lock:
            now = {k: self.stats[k] for k in _DRAINED}
            out = {f"cog_{k}": now[k] - self._drained.get(k, 0) for k in _DRAINED}
            self._drained = now
        return {k: v for k, v in out.items() if v}

    # ------------------------------------------------------------------------------- GDAL setup
    def gdal_options(self) -> dict[str, str]:
        """GDAL config options for this root: none for a local folder, HTTP / S3 settings for remote."""
        if not is_remote(self.root):
            return {}
        opts = {
            **HTTP_GDAL_OPTIONS,
            "GDAL_HTTP_USERAGENT": self.user_agent,
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
            "GDAL_HTTP_MULTIPLEX": "YES",
            "VSI_CACHE": "TRUE",
            # GTiff fetches the blocks of one read (all 64 bands) with parallel range requests
            "GDAL_NUM_THREADS": "ALL_CPUS",
        }
        if self.root.startswith(("s3://", "/vsis3/")):
            opts["AWS_NO_SIGN_REQUEST"] = "YES"
            bucket = self.root.split("/")[2]  # "s3://bucket/..." and "/vsis3/bucket/..." alike
            m = _SOURCE_COOP_BUCKET.match(bucket)
            if m is not None:
                opts["AWS_REGION"] = m["region"]
        return opts

    def _gdal_env(self) -> rasterio.Env:
        """The GDAL options of this root (see triplet_builder.remote.gdal_env)."""
        opts = self.gdal_options()
        return gdal_env(**opts) if opts else rasterio.Env()

    # --------------------------------------------------------------------------------- lookups
    def _year_tiles(self, year: int) -> YearTiles:
        tiles = self._years.get(int(year))
        if tiles is None:
            tiles = year_tiles(self.root, year, user_agent=self.user_agent, cache_dir=self.cache_dir)
            self._years[int(year)] = tiles
        return tiles

    def _open(self, path: str) -> DatasetReader:
        ds = self._datasets.get(path)
        if ds is not None:
            return ds
        ds = rasterio.open(path)
        try:
            if ds.count != N_BANDS or ds.dtypes[0] != "int8":
                raise ValueError(
                    f"{path} has {ds.count} bands of {ds.dtypes[0]}; an AlphaEarth tile has 64 int8 bands"
                )
            if ds.tags().get("SYNTHETIC", "").lower() == "true" and not self.synthetic:
                raise ValueError(
                    f"{path} is tagged SYNTHETIC=true (not AlphaEarth data); open it with "
                    f"CogEmbeddingProvider({self.root!r}, synthetic=True) so outputs are labelled synthetic"
                )
        except BaseException:
            ds.close()
            raise
        self._datasets[path] = ds
        self._file_ids[path] = self._file_id(path)
        self.stats["files_opened"] += 1
        return ds

    def _file_id(self, path: str) -> tuple[Any, ...]:
        """The file's identity in the block cache: the path, and for a local file its size and mtime
        (a remote mirror's tiles are immutable, so their path is their identity)."""
        if is_remote(self.root) or path.startswith("/vsi"):
            return (path,)
        st = Path(path).stat()
        return (path, st.st_size, st.st_mtime_ns)

    def _to_crs(self, crs: Any) -> Transformer:
        key = crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)
        tr = self._transformers.get(key)
        if tr is None:
            tr = Transformer.from_crs("EPSG:4326", CRS.from_user_input(key), always_xy=True)
            self._transformers[key] = tr
        return tr

    def _read_window(
        self, path: str, ds: DatasetReader, block: tuple[int, int], rows: np.ndarray, cols: np.ndarray
    ) -> CachedWindow:
        """The raw pixels (rows, cols) of one block (all bands), from the LRU or by one read.

        GDAL fetches and decompresses whole blocks whatever the window, so the read takes the whole
        block; what the cache keeps of it is the lattice the points lie on (`lattice_of`: the anchor
        grid of the chips), so a later task's chips on the same lattice are served from memory.
        """
        cache = block_cache(self.cache_bytes)
        key = (*self._file_ids[path], block[0], block[1])
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit.covers(rows, cols):
            self.stats["cache_hits"] += 1
            return hit
        bh, bw = ds.block_shapes[0]
        r0, c0 = block[0] * bh, block[1] * bw
        r1, c1 = min(r0 + bh, ds.height), min(c0 + bw, ds.width)
        data = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0))  # (64, h, w), all bands in one read
        self.stats["block_reads"] += 1
        self.stats["pixels_read"] += (r1 - r0) * (c1 - c0)
        lr0, sr = lattice_of(rows, r0)
        lc0, sc = lattice_of(cols, c0)
        kept = data[:, lr0 - r0 :: sr, lc0 - c0 :: sc]
        win = CachedWindow(lr0, r1, lc0, c1, np.ascontiguousarray(kept), sr, sc)
        if cache is not None:
            cache.put(key, win)
        return win

    def _sample_file(self, path: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes (M, 64) and validity (M,) of M points in one file; points outside it are invalid."""
        ds = self._open(path)
        x, y = self._to_crs(ds.crs).transform(lon, lat)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        inv = ~ds.transform  # the inverse affine: right for the bottom-up (positive y) files too
        # EDGE_EPS: a point on a pixel edge to within float noise (anchors of 256 px chips at 16 x 16 lie
        # exactly on 10 m edges) goes to the pixel east / north of it (the files are bottom-up), the
        # same as the Earth Engine provider decides
        col = np.floor(inv.a * x + inv.b * y + inv.c + EDGE_EPS)
        row = np.floor(inv.d * x + inv.e * y + inv.f + EDGE_EPS)
        inside = (row >= 0) & (row < ds.height) & (col >= 0) & (col < ds.width)
        out = np.full((lon.size, N_BANDS), NODATA, dtype=np.int8)
        idx = np.flatnonzero(inside)
        if idx.size:
            r = row[idx].astype(np.int64)
            c = col[idx].astype(np.int64)
            bh, bw = ds.block_shapes[0]
            n_bc = (ds.width + bw - 1) // bw
            key = (r // bh) * n_bc + (c // bw)
            order = np.argsort(key, kind="stable")
            keys_sorted = key[order]
            bounds = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1], True])
            groups = list(itertools.pairwise(bounds))
            # blocks in the order of the last point that needs each: the points come chip by chip, so the
            # blocks under a task's last chips (the next task's first, on its border) are read last and
            # stay the most recent in the LRU
            groups.sort(key=lambda g: int(order[g[0] : g[1]].max()))
            for g0, g1 in groups:
                members = order[g0:g1]
                rr, cc = r[members], c[members]
                k = int(keys_sorted[g0])
                win = self._read_window(path, ds, (k // n_bc, k % n_bc), rr, cc)
                out[idx[members]] = win.take(rr, cc)
        ok = inside & ~(out == NODATA).any(axis=1)
        out[~ok] = NODATA
        return out, ok

    def tile_name(self, path: str) -> str:
        """A tile as the user can find it: its path relative to a local root (e.g. 2017/31N/x.tiff), or its
        URL for a remote root."""
        if is_remote(self.root):
            return path
        try:
            return Path(path).resolve().relative_to(Path(self.root).resolve()).as_posix()
        except ValueError:
            return path

    # ------------------------------------------------------------------------------ public API
    def sample(self, lon: np.ndarray, lat: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes (N, 64) int8 (-128 where invalid) and validity (N,) bool of N WGS84 points in `year`.

        For a remote root with a `cache_dir`, the answer is kept on disk keyed by the root, the year and
        the points, so a rerun (after a crash, or into another output folder) makes no request at all.
        """
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        if self.cache_dir is None or not is_remote(self.root) or lon.shape != lat.shape:
            return self._sample(lon, lat, year)
        key = hashlib.sha256(
            f"{self.root}|{int(year)}|".encode() + lon.tobytes() + b"|" + lat.tobytes()
        ).hexdigest()
        cache = DiskCache(Path(self.cache_dir) / "points")
        hit = cache.get(key)
        if hit is not None:
            with np.load(io.BytesIO(hit)) as z:
                self.stats["point_cache_hits"] = self.stats.get("point_cache_hits", 0) + 1
                return z["codes"], z["valid"]
        codes, valid = self._sample(lon, lat, year)
        buf = io.BytesIO()
        np.savez(buf, codes=codes, valid=valid)
        cache.put(key, buf.getvalue())
        return codes, valid

    def _sample(self, lon: np.ndarray, lat: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
        """`sample` without the on-disk cache.

        Each point is served by the tiles of `year` whose WGS84 box contains it, its own UTM zone's tile
        first; a tile that does not hold the point (or holds -128 there) hands it to the next one.
        Raises ValueError when the index has no tile for `year`.
        """
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        if lon.shape != lat.shape:
            raise ValueError(f"lon and lat differ in length: {lon.size} != {lat.size}")
        n = lon.size
        codes = np.full((n, N_BANDS), NODATA, dtype=np.int8)
        valid = np.zeros(n, dtype=bool)
        with self._lock, self._gdal_env():
            tiles = self._year_tiles(year)
            self.stats["calls"] += 1
            self.stats["points"] += n
            p, t, rank = covering_tiles(tiles, lon, lat)
            if p.size == 0:
                return codes, valid
            for k in range(int(rank.max()) + 1):
                todo = (rank == k) & ~valid[p]
                for tile in np.unique(t[todo]):
                    pts = p[todo & (t == tile)]
                    path = tiles.paths[int(tile)]
                    try:
                        c, ok = self._sample_file(path, lon[pts], lat[pts])
                    except (rasterio.errors.RasterioError, OSError, ValueError) as e:
                        cause = str(e).replace(path, self.tile_name(path)).splitlines()[0] or type(e).__name__
                        raise EmbeddingTileError(
                            f"AlphaEarth tile {self.tile_name(path)} cannot be read ({cause}): download it "
                            "again from the mirror, or rebuild the index without it"
                        ) from None
                    codes[pts[ok]] = c[ok]
                    valid[pts[ok]] = True
            self.stats["points_valid"] += int(valid.sum())
        return codes, valid

    def read_grid(
        self, bounds: tuple[float, float, float, float], crs: str, shape: tuple[int, int], year: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A north-up (64, H, W) int8 read of the grid `bounds` (left, bottom, right, top) in `crs`.

        Nearest resampling of the codes through a WarpedVRT (which honours the bottom-up files);
        nodata -128. Tiles covering the grid are read in the order of `sample` (own zone of the
        grid centre first) until every pixel is valid. Returns (codes, valid (H, W)).
        """
        height, width = int(shape[0]), int(shape[1])
        left, bottom, right, top = (float(v) for v in bounds)
        if not (right > left and top > bottom and height > 0 and width > 0):
            raise ValueError(
                f"read_grid needs left < right, bottom < top and a positive shape: {bounds}, {shape}"
            )
        # north-up destination grid: row 0 is the northern edge
        dst_transform = Affine((right - left) / width, 0.0, left, 0.0, -(top - bottom) / height, top)
        codes = np.full((N_BANDS, height, width), NODATA, dtype=np.int8)
        valid = np.zeros((height, width), dtype=bool)
        with self._lock, self._gdal_env():
            tiles = self._year_tiles(year)
            w, s, e, n = transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
            cands = tiles.tree.query(shapely.box(w, s, e, n), predicate="intersects")
            if cands.size == 0:
                return codes, valid
            cx, cy = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
                (left + right) / 2, (bottom + top) / 2
            )
            own = tiles.zones[cands] == point_zone_codes(np.array([cx]), np.array([cy]))[0]
            bx = tiles.boxes[cands]
            holds_centre = (bx[:, 0] <= cx) & (cx <= bx[:, 2]) & (bx[:, 1] <= cy) & (cy <= bx[:, 3])
            for tile in cands[np.lexsort((cands, ~holds_centre, ~own))]:
                ds = self._open(tiles.paths[int(tile)])
                with WarpedVRT(
                    ds,
                    crs=crs,
                    transform=dst_transform,
                    width=width,
                    height=height,
                    resampling=Resampling.nearest,
                    src_nodata=NODATA,
                    nodata=NODATA,
                ) as vrt:
                    arr = vrt.read()
                self.stats["grid_reads"] += 1
                fill = ~(arr == NODATA).any(axis=0) & ~valid
                codes[:, fill] = arr[:, fill]
                valid |= fill
                if valid.all():
                    break
        return codes, valid
