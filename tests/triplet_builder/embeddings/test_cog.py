"""CogEmbeddingProvider on the real AlphaEarth window (bottom-up) laid out like the public mirror."""

from __future__ import annotations

import http.server
import pickle
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject

from triplet_builder.embeddings import index as index_mod
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import INDEX_COLUMNS, build_index, load_index, resolve_path
from triplet_builder.embeddings.quantize import NODATA, dequantize, quantize

REAL_WINDOW = (
    Path(__file__).parents[2] / "data/real/alphaearth_geotiff/aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"
)
TILE_NAME = "xjejfvrbm1fbu1ecw-0000000000-0000008192.tiff"
YEAR = 2024


def _read_raw(path: Path) -> tuple[np.ndarray, Affine, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, dict(ds.profile)


def _lonlat(transform: Affine, crs: str, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat of the centres of raw pixels (row, col) of a file."""
    c = np.asarray(cols, dtype=float) + 0.5
    r = np.asarray(rows, dtype=float) + 0.5
    x = transform.c + transform.a * c + transform.b * r
    y = transform.f + transform.d * c + transform.e * r
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _write(path: Path, data: np.ndarray, profile: dict, **changes: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = {**profile, **changes}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        for i in range(data.shape[0]):
            dst.set_band_description(i + 1, f"A{i:02d}")


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "annual"
    (root / "2024" / "13N").mkdir(parents=True)
    shutil.copy(REAL_WINDOW, root / "2024" / "13N" / TILE_NAME)
    build_index(root)
    return root


@pytest.fixture
def raw() -> tuple[np.ndarray, Affine, dict]:
    return _read_raw(REAL_WINDOW)


def test_real_window_is_bottom_up(raw: tuple[np.ndarray, Affine, dict]) -> None:
    _, transform, _ = raw
    assert transform.e > 0  # rows run south to north, like the public files


def test_index_has_the_mirror_layout(mirror: Path) -> None:
    gdf = load_index(mirror)
    assert list(gdf.columns) == list(INDEX_COLUMNS)
    assert gdf.geometry.name == "geom"
    row = gdf.iloc[0]
    assert row["path"] == f"s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/2024/13N/{TILE_NAME}"
    assert (row["year"], row["crs"], row["utm_zone"]) == (2024, "EPSG:32613", "13N")
    assert (row["utm_west"], row["utm_south"], row["utm_east"], row["utm_north"]) == (
        418080.0,
        4423680.0,
        418180.0,
        4423780.0,
    )
    assert (
        row["wgs84_west"] < -105.958 < row["wgs84_east"] and row["wgs84_south"] < 39.96 < row["wgs84_north"]
    )
    assert row["geom"].bounds == pytest.approx(
        (row["wgs84_west"], row["wgs84_south"], row["wgs84_east"], row["wgs84_north"])
    )
    assert len(load_index(mirror, year=2023)) == 0


def test_build_index_rejects_a_file_in_the_wrong_zone_folder(tmp_path: Path) -> None:
    (tmp_path / "2024" / "12N").mkdir(parents=True)
    shutil.copy(REAL_WINDOW, tmp_path / "2024" / "12N" / TILE_NAME)
    with pytest.raises(ValueError, match="13N"):
        build_index(tmp_path)


def test_resolve_path_maps_by_the_part_after_annual(tmp_path: Path) -> None:
    p = f"s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/2024/13N/{TILE_NAME}"
    assert resolve_path(tmp_path, p) == str(tmp_path / "2024" / "13N" / TILE_NAME)
    assert (
        resolve_path("https://data.source.coop/tge-labs/aef/v1/annual/", p)
        == f"/vsicurl/https://data.source.coop/tge-labs/aef/v1/annual/2024/13N/{TILE_NAME}"
    )
    assert (
        resolve_path("s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual", p)
        == f"/vsis3/us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/2024/13N/{TILE_NAME}"
    )


def test_every_pixel_matches_the_raw_file_and_has_unit_norm(
    mirror: Path, raw: tuple[np.ndarray, Affine, dict]
) -> None:
    data, transform, _ = raw
    rows, cols = np.mgrid[0:10, 0:10]
    lon, lat = _lonlat(transform, "EPSG:32613", rows.ravel(), cols.ravel())
    codes, valid = CogEmbeddingProvider(str(mirror)).sample(lon, lat, YEAR)
    assert codes.dtype == np.int8 and codes.shape == (100, 64) and valid.all()
    np.testing.assert_array_equal(codes, data[:, rows.ravel(), cols.ravel()].T)  # reference: raw indexing
    norms = np.linalg.norm(dequantize(codes), axis=1)
    assert norms.min() >= 0.99 and norms.max() <= 1.01


def test_north_most_row_is_raw_row_height_minus_one(
    mirror: Path, raw: tuple[np.ndarray, Affine, dict]
) -> None:
    data, transform, _ = raw
    height, width = data.shape[1:]
    # the centre of the NORTH-most row, from the transform: the larger of the two edge northings
    north = max(transform.f, transform.f + height * transform.e)
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = np.full(width, north - abs(transform.e) / 2)
    lon, lat = Transformer.from_crs("EPSG:32613", "EPSG:4326", always_xy=True).transform(x, y)
    codes, valid = CogEmbeddingProvider(str(mirror)).sample(np.asarray(lon), np.asarray(lat), YEAR)
    assert valid.all()
    np.testing.assert_array_equal(codes, data[:, height - 1, :].T)
    assert not np.array_equal(codes, data[:, 0, :].T)  # a north-up reader would return raw row 0


def test_read_grid_is_north_up(mirror: Path, raw: tuple[np.ndarray, Affine, dict]) -> None:
    data, transform, _ = raw
    height, width = data.shape[1:]
    ys = (transform.f, transform.f + height * transform.e)
    bounds = (transform.c, min(ys), transform.c + width * transform.a, max(ys))
    with CogEmbeddingProvider(str(mirror)) as provider:
        codes, valid = provider.read_grid(bounds, "EPSG:32613", (height, width), YEAR)
    assert codes.shape == (64, height, width) and codes.dtype == np.int8 and valid.all()
    np.testing.assert_array_equal(codes, np.flip(data, axis=1))  # np.flipud of every band


def test_read_grid_outside_the_tiles_is_nodata(mirror: Path) -> None:
    provider = CogEmbeddingProvider(str(mirror))
    codes, valid = provider.read_grid((0.0, 0.0, 100.0, 100.0), "EPSG:32613", (4, 4), YEAR)
    assert not valid.any() and (codes == NODATA).all()


def test_masked_pixels_come_back_invalid(tmp_path: Path, raw: tuple[np.ndarray, Affine, dict]) -> None:
    data, transform, profile = raw
    masked = data.copy()
    masked[:, 2, 3] = NODATA  # a pixel masked in all bands, as in the product
    masked[:, 7, 0:4] = NODATA
    masked[5, 4, 4] = NODATA  # a single band at -128 also makes the pixel invalid
    _write(tmp_path / "2024" / "13N" / TILE_NAME, masked, profile)
    build_index(tmp_path)
    rows, cols = np.mgrid[0:10, 0:10]
    lon, lat = _lonlat(transform, "EPSG:32613", rows.ravel(), cols.ravel())
    codes, valid = CogEmbeddingProvider(str(tmp_path)).sample(lon, lat, YEAR)
    expect_invalid = (masked == NODATA).any(axis=0).ravel()
    assert expect_invalid.sum() == 6
    np.testing.assert_array_equal(valid, ~expect_invalid)
    assert (codes[~valid] == NODATA).all()
    np.testing.assert_array_equal(codes[valid], data[:, rows.ravel(), cols.ravel()].T[valid])


def test_points_outside_every_tile_and_nan_points_are_invalid(
    mirror: Path, raw: tuple[np.ndarray, Affine, dict]
) -> None:
    _, transform, _ = raw
    lon_in, lat_in = _lonlat(transform, "EPSG:32613", np.array([4]), np.array([4]))
    lon = np.array([lon_in[0], 0.0, -105.95, np.nan, lon_in[0] + 0.002])
    lat = np.array([lat_in[0], 0.0, 39.95, 39.96, lat_in[0]])
    codes, valid = CogEmbeddingProvider(str(mirror)).sample(lon, lat, YEAR)
    np.testing.assert_array_equal(valid, [True, False, False, False, False])
    assert (codes[1:] == NODATA).all()


def test_a_year_without_tiles_raises_naming_year_and_root(mirror: Path) -> None:
    provider = CogEmbeddingProvider(str(mirror))
    with pytest.raises(ValueError, match=rf"2019.*{re.escape(str(mirror))}"):
        provider.sample(np.array([-105.958]), np.array([39.96]), 2019)


def test_two_tiles_side_by_side_give_the_single_file_codes(
    tmp_path: Path, mirror: Path, raw: tuple[np.ndarray, Affine, dict]
) -> None:
    data, transform, profile = raw
    split = tmp_path / "split"
    zone_dir = split / "2024" / "13N"
    _write(zone_dir / "xjejfvrbm1fbu1ecw-0000000000-0000008192.tiff", data[:, :, :5], profile, width=5)
    _write(
        zone_dir / "xjejfvrbm1fbu1ecw-0000000000-0000008197.tiff",
        data[:, :, 5:],
        profile,
        width=5,
        transform=transform @ Affine.translation(5, 0),
    )
    build_index(split)
    # pixel centres plus points straddling the seam between the files
    rows, cols = np.mgrid[0:10, 0:10]
    lon, lat = _lonlat(transform, "EPSG:32613", rows.ravel(), cols.ravel())
    seam_rows = np.arange(10) + 0.25
    lon_s, lat_s = _lonlat(transform, "EPSG:32613", seam_rows, np.full(10, 4.45))
    lon_t, lat_t = _lonlat(transform, "EPSG:32613", seam_rows, np.full(10, 4.55))
    lon, lat = np.r_[lon, lon_s, lon_t], np.r_[lat, lat_s, lat_t]
    single_codes, single_valid = CogEmbeddingProvider(str(mirror)).sample(lon, lat, YEAR)
    provider = CogEmbeddingProvider(str(split))
    codes, valid = provider.sample(lon, lat, YEAR)
    assert single_valid.all() and valid.all()
    np.testing.assert_array_equal(codes, single_codes)
    assert provider.stats["files_opened"] == 2


def test_own_zone_tile_first_and_fallback_where_it_is_masked(
    tmp_path: Path, raw: tuple[np.ndarray, Affine, dict]
) -> None:
    data, transform, profile = raw
    masked = data.copy()
    masked[:, :, :3] = NODATA  # the own-zone (13N) tile has no data in its three western columns
    _write(tmp_path / "2024" / "13N" / TILE_NAME, masked, profile)
    # the same place in a 12N tile (north-up this time), resampled from the window
    left, right = transform.c - 30, transform.c + 130
    src_bounds = rasterio.warp.transform_bounds("EPSG:32613", "EPSG:32612", left, 4423650.0, right, 4423810.0)
    x0, y1 = np.floor(src_bounds[0] / 10) * 10, np.ceil(src_bounds[3] / 10) * 10
    w12 = int(np.ceil((src_bounds[2] - x0) / 10))
    h12 = int(np.ceil((y1 - src_bounds[1]) / 10))
    t12 = Affine(10, 0, x0, 0, -10, y1)
    data12 = np.full((64, h12, w12), NODATA, dtype=np.int8)
    reproject(
        data,
        data12,
        src_transform=transform,
        src_crs="EPSG:32613",
        src_nodata=NODATA,
        dst_transform=t12,
        dst_crs="EPSG:32612",
        dst_nodata=NODATA,
        resampling=Resampling.nearest,
    )
    tile12 = tmp_path / "2024" / "12N" / "zzzzzzzzzzzzzzzzz-0000000000-0000000000.tiff"
    _write(tile12, data12, profile, width=w12, height=h12, transform=t12, crs="EPSG:32612")
    build_index(tmp_path)
    only12 = tmp_path / "only12"
    (only12 / "2024" / "12N").mkdir(parents=True)
    shutil.copy(tile12, only12 / "2024" / "12N" / tile12.name)
    build_index(only12)

    rows, cols = np.mgrid[0:10, 0:10]
    lon, lat = _lonlat(transform, "EPSG:32613", rows.ravel(), cols.ravel())
    codes, valid = CogEmbeddingProvider(str(tmp_path)).sample(lon, lat, YEAR)
    codes12, valid12 = CogEmbeddingProvider(str(only12)).sample(lon, lat, YEAR)
    west = cols.ravel() < 3
    assert valid[~west].all()
    np.testing.assert_array_equal(codes[~west], data[:, rows.ravel(), cols.ravel()].T[~west])  # own zone
    # where 13N gives -128 the 12N tile answers (its rotated footprint misses a corner pixel or so)
    assert valid12[west].sum() >= 25
    np.testing.assert_array_equal(valid[west], valid12[west])
    np.testing.assert_array_equal(codes[west], codes12[west])


def _tiled_file(root: Path, size: int = 64, block: int = 16) -> tuple[np.ndarray, Affine]:
    """A bottom-up tiled 64-band file of random unit vectors, `block` px blocks, in the mirror layout."""
    rng = np.random.default_rng(3)
    v = rng.standard_normal((size, size, 64))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    data = np.moveaxis(quantize(v), -1, 0)
    transform = Affine(10, 0, 418080.0, 0, 10, 4423680.0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 64,
        "dtype": "int8",
        "crs": "EPSG:32613",
        "transform": transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
    }
    _write(root / "2024" / "13N" / TILE_NAME, data, profile)
    build_index(root)
    return data, transform


def test_points_are_grouped_by_block_and_blocks_are_cached(tmp_path: Path) -> None:
    data, transform = _tiled_file(tmp_path)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(16, 32, 50), rng.integers(32, 48, 50)  # all in block (1, 2)
    lon, lat = _lonlat(transform, "EPSG:32613", rows, cols)
    provider = CogEmbeddingProvider(str(tmp_path))
    codes, valid = provider.sample(lon, lat, YEAR)
    assert valid.all()
    np.testing.assert_array_equal(codes, data[:, rows, cols].T)
    assert provider.stats["block_reads"] == 1
    provider.sample(lon, lat, YEAR)  # the same points again: served from the in-memory LRU
    assert provider.stats["block_reads"] == 1 and provider.stats["cache_hits"] == 1

    rows4, cols4 = rng.integers(0, 64, 400), rng.integers(0, 32, 400)  # 8 blocks: 4 rows x 2 cols
    lon4, lat4 = _lonlat(transform, "EPSG:32613", rows4, cols4)
    fresh = CogEmbeddingProvider(str(tmp_path))
    codes4, _ = fresh.sample(lon4, lat4, YEAR)
    np.testing.assert_array_equal(codes4, data[:, rows4, cols4].T)
    assert fresh.stats["block_reads"] == 8

    uncached = CogEmbeddingProvider(str(tmp_path), cache_bytes=0)
    uncached.sample(lon, lat, YEAR)
    uncached.sample(lon, lat, YEAR)
    assert uncached.stats["block_reads"] == 2  # one read per block per call, nothing kept


def test_provider_pickles_after_use(mirror: Path, raw: tuple[np.ndarray, Affine, dict]) -> None:
    _, transform, _ = raw
    lon, lat = _lonlat(transform, "EPSG:32613", np.arange(10), np.arange(10))
    provider = CogEmbeddingProvider(str(mirror), synthetic=False)
    codes, valid = provider.sample(lon, lat, YEAR)
    assert provider.stats["files_opened"] == 1
    blob = pickle.dumps(provider)
    assert len(blob) < 4096  # settings and counters only: no handles, no pixels, no index
    clone = pickle.loads(blob)
    # the description lands in every row (aef_source): the root's name, never the machine's folder
    assert clone.description == provider.description == f"cog:{mirror.name}"
    assert clone.synthetic is False
    codes2, valid2 = clone.sample(lon, lat, YEAR)
    np.testing.assert_array_equal(codes2, codes)
    np.testing.assert_array_equal(valid2, valid)
    provider.close()
    codes3, _ = provider.sample(lon, lat, YEAR)  # usable again after close
    np.testing.assert_array_equal(codes3, codes)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server with single-range support (what GDAL's /vsicurl/ needs)."""

    user_agents: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        type(self).user_agents.append(self.headers.get("User-Agent", ""))
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if rng is None or not path.is_file():
            super().do_GET()
            return
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if m is None:
            self.send_error(416)
            return
        data = path.read_bytes()
        start = int(m[1])
        end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
        body = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        type(self).user_agents.append(self.headers.get("User-Agent", ""))
        super().do_HEAD()


@pytest.fixture
def http_root(mirror: Path) -> Iterator[str]:
    _RangeHandler.user_agents = []

    def handler(*args: object, **kwargs: object) -> _RangeHandler:
        return _RangeHandler(*args, directory=str(mirror), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_http_root_downloads_the_index_once_and_reads_over_vsicurl(
    http_root: str,
    mirror: Path,
    raw: tuple[np.ndarray, Affine, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_mod, "CACHE_DIR", tmp_path / "cache")
    data, transform, _ = raw
    rows, cols = np.mgrid[0:10, 0:10]
    lon, lat = _lonlat(transform, "EPSG:32613", rows.ravel(), cols.ravel())
    provider = CogEmbeddingProvider(http_root, user_agent="sar-triplets/0.1 (test)")
    assert provider.gdal_options()["GDAL_HTTP_USERAGENT"] == "sar-triplets/0.1 (test)"
    codes, valid = provider.sample(lon, lat, YEAR)
    assert valid.all()
    np.testing.assert_array_equal(codes, data[:, rows.ravel(), cols.ravel()].T)
    cached = list((tmp_path / "cache").glob("*aef_index.parquet"))
    assert len(cached) == 1
    assert _RangeHandler.user_agents and all(
        ua == "sar-triplets/0.1 (test)" for ua in _RangeHandler.user_agents
    )
    n_requests = len(_RangeHandler.user_agents)
    load_index(http_root)  # from the cache: no new request
    assert len(_RangeHandler.user_agents) == n_requests
