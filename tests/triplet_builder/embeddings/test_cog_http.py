"""The COG provider reading a mirror-layout root over HTTP range requests (GDAL /vsicurl/) from a loopback
server: same codes as the local folder, explicit User-Agent, index fetched once, blocks fetched once,
transient 503s survived, bottom-up files read right, and a whole build with a remote root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from affine import Affine
from pyproj import Transformer

from tests.conftest import ROOT
from tests.servers import serve
from tests.servers.http_range import RangeHandler, range_server_attrs
from triplet_builder.embeddings.block_cache import clear_block_caches
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import INDEX_NAME, build_index, load_index

DEMO_AEF = ROOT / "data/demo/aef_synthetic"
REAL_WINDOW = ROOT / "tests/data/real/alphaearth_geotiff/aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"
UA = "sar-triplets/0.1 (test)"


def _demo_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 points of the demo's synthetic AlphaEarth tile: n * 9 / 10 where it has data (it covers the
    demo scenes only), the rest where it is masked."""
    idx = load_index(DEMO_AEF)
    w, s, e, nn = idx[["wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"]].iloc[0]
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(w, e, 50 * n), rng.uniform(s, nn, 50 * n)
    _, valid = CogEmbeddingProvider(str(DEMO_AEF), synthetic=True).sample(lon, lat, 2017)
    good, bad = np.flatnonzero(valid)[: n - n // 10], np.flatnonzero(~valid)[: n // 10]
    keep = np.r_[good, bad]
    assert keep.size == n
    return lon[keep], lat[keep]


def _tile_requests(log: list) -> list:
    return [r for r in log if r.path.endswith(".tiff") and r.status == 206]


def test_the_server_refuses_default_user_agents(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 10)
    with serve(RangeHandler, **range_server_attrs(tmp_path)) as srv:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{srv.url}/f.bin", timeout=5)
        assert e.value.code == 403
        req = urllib.request.Request(f"{srv.url}/f.bin", headers={"User-Agent": UA, "Range": "bytes=2-4"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 206 and r.read() == b"xxx"


def test_the_server_refuses_gdals_default_user_agent(tmp_path: Path) -> None:
    """GDAL's /vsicurl/ without GDAL_HTTP_USERAGENT (a fresh process: our code sets it process-wide)
    sends its default agent, which the server, like the mirror, refuses."""
    shutil.copy(REAL_WINDOW, tmp_path / "w.tif")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_", "CPL_"))}
    with serve(RangeHandler, **range_server_attrs(tmp_path)) as srv:
        script = f"import rasterio; rasterio.open('/vsicurl/{srv.url}/w.tif')"
        proc = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        log = list(srv.log)
    assert proc.returncode != 0, "GDAL read the file with its default User-Agent"
    assert log and all(r.user_agent.startswith("GDAL/") and r.status == 403 for r in log), log


def test_http_root_gives_the_local_codes_with_our_user_agent(tmp_path: Path) -> None:
    lon, lat = _demo_points(300)
    local_codes, local_valid = CogEmbeddingProvider(str(DEMO_AEF), synthetic=True).sample(lon, lat, 2017)
    assert 0.85 < local_valid.mean() < 0.95
    with serve(RangeHandler, **range_server_attrs(DEMO_AEF)) as srv:
        p = CogEmbeddingProvider(srv.url + "/", synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        codes, valid = p.sample(lon, lat, 2017)
        log = list(srv.log)
    np.testing.assert_array_equal(valid, local_valid)
    np.testing.assert_array_equal(codes, local_codes)
    assert log and all(r.user_agent == UA for r in log)
    assert all(r.status in (200, 206) for r in log), {r.status for r in log}


def test_index_once_and_each_block_once(tmp_path: Path) -> None:
    """A rerun in a fresh process-level provider downloads no index again; within a provider, a block
    already read serves every later chip on it without a single request."""
    lon, lat = _demo_points(200, seed=1)
    with serve(RangeHandler, **range_server_attrs(DEMO_AEF)) as srv:
        p = CogEmbeddingProvider(
            srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path), cache_bytes=2**30
        )
        p.sample(lon, lat, 2017)
        index_gets = [r for r in srv.log if r.path.endswith(INDEX_NAME)]
        assert len(index_gets) == 1 and index_gets[0].status == 200
        blocks = p.stats["block_reads"]
        n = len(srv.log)
        # the same chips again, and a subset of them: all from the provider's block cache
        p.sample(lon, lat, 2017)
        p.sample(lon[:50], lat[:50], 2017)
        assert len(srv.log) == n and p.stats["block_reads"] == blocks and p.stats["cache_hits"] >= 2
        # a second provider (a rerun / another worker): the index comes from the on-disk cache
        q = CogEmbeddingProvider(srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        q.sample(lon[:5], lat[:5], 2017)
        assert len([r for r in srv.log if r.path.endswith(INDEX_NAME)]) == 1
    assert len(list(tmp_path.glob(f"*{INDEX_NAME}"))) == 1


def test_bytes_fetched_stay_within_the_block_touched(tmp_path: Path) -> None:
    """Points inside one block fetch that block's 64 band-blocks (the mirror's files are band-interleaved),
    not the file: bytes fetched are close to the block's compressed size."""
    root = tmp_path / "annual"
    tile = root / "2024/31N/synthetichash00000-0000000000-0000000000.tiff"
    tile.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(-127, 128, (64, 512, 512), dtype=np.int8)  # incompressible, like real codes
    profile = {
        "driver": "GTiff", "dtype": "int8", "count": 64, "width": 512, "height": 512, "crs": "EPSG:32631",
        "transform": Affine(10, 0, 600000, 0, 10, 4800000),  # bottom-up, like the mirror
        "nodata": -128, "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate",
        "interleave": "band",
    }  # fmt: skip
    with rasterio.open(tile, "w", **profile) as ds:
        ds.write(data)
    build_index(root)
    with rasterio.open(tile) as ds:
        block_bytes = sum(ds.block_size(b, 1, 2) for b in range(1, 65))
    rows = np.random.default_rng(2).uniform(128 + 2, 256 - 2, 40)
    cols = np.random.default_rng(3).uniform(256 + 2, 384 - 2, 40)
    x, y = profile["transform"] * (cols, rows)  # type: ignore[operator]
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(x, y)
    with serve(RangeHandler, **range_server_attrs(root)) as srv:
        p = CogEmbeddingProvider(srv.url, user_agent=UA, cache_dir=str(tmp_path / "cache"))
        codes, valid = p.sample(np.asarray(lon), np.asarray(lat), 2024)
        fetched = sum(r.nbytes for r in _tile_requests(srv.log))
    assert valid.all() and p.stats["block_reads"] == 1
    np.testing.assert_array_equal(codes, data[:, rows.astype(int), cols.astype(int)].T)
    file_bytes = tile.stat().st_size
    assert block_bytes <= fetched < 3 * block_bytes + 64 * 1024, (fetched, block_bytes, file_bytes)


def test_transient_503s_are_retried_by_gdal(tmp_path: Path) -> None:
    lon, lat = _demo_points(20, seed=4)
    local_codes, _ = CogEmbeddingProvider(str(DEMO_AEF), synthetic=True).sample(lon, lat, 2017)
    # the index is fetched first (by urllib, which does not retry): prime the cache, then fail the tile reads
    with serve(RangeHandler, **range_server_attrs(DEMO_AEF)) as srv:
        load_index(srv.url, cache_dir=tmp_path, user_agent=UA)
        srv.fail_next["503"] = 2  # type: ignore[attr-defined]
        p = CogEmbeddingProvider(srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        codes, _ = p.sample(lon, lat, 2017)
        statuses = [r.status for r in srv.log]
    assert statuses.count(503) == 2
    np.testing.assert_array_equal(codes, local_codes)


def test_bottom_up_real_window_over_http(tmp_path: Path) -> None:
    """The real AlphaEarth window (stored bottom-up, positive y pixel size) in a mirror layout over HTTP:
    the north-most raw row is the LAST row of the file, and norms are ~1."""
    root = tmp_path / "annual"
    tile = root / "2024/13N/xjejfvrbm1fbu1ecw-0000000000-0000008192.tiff"
    tile.parent.mkdir(parents=True)
    shutil.copy(REAL_WINDOW, tile)
    build_index(root)
    with rasterio.open(tile) as ds:
        data, t, crs = ds.read(), ds.transform, ds.crs
    assert t.e > 0  # bottom-up
    rows, cols = np.mgrid[0:10, 0:10]
    x, y = (t @ Affine.translation(0.5, 0.5)) * (cols.ravel(), rows.ravel())
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    with serve(RangeHandler, **range_server_attrs(root)) as srv:
        p = CogEmbeddingProvider(srv.url, user_agent=UA, cache_dir=str(tmp_path / "cache"))
        codes, valid = p.sample(np.asarray(lon), np.asarray(lat), 2024)
        north_up, grid_valid = p.read_grid(
            (t.c, t.f, t.c + 10 * t.a, t.f + 10 * t.e), crs.to_string(), (10, 10), 2024
        )
    assert valid.all() and grid_valid.all()
    np.testing.assert_array_equal(codes, data[:, rows.ravel(), cols.ravel()].T)
    np.testing.assert_array_equal(north_up[:, 0, :], data[:, 9, :])  # north row of the grid = last raw row
    from schemas.aef import dequantize

    norms = np.linalg.norm(dequantize(codes), axis=1)
    assert np.all((norms > 0.99) & (norms < 1.01))


@pytest.mark.slow
def test_demo_build_with_a_remote_root_equals_the_local_build(tmp_path: Path) -> None:
    """`make build-dataset` with embeddings.root = the loopback server: identical anchors, and a rerun into
    another output folder makes no request at all."""
    region = yaml.safe_load((ROOT / "pipelines/regions/demo.yaml").read_text())
    region["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    region["workers"] = 1
    region["cache_dir"] = str(tmp_path / "cache")

    def build(root: str, out: str) -> dict:
        r = dict(region, output={"dir": str(tmp_path / out)})
        r["embeddings"] = dict(region["embeddings"], root=root)
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump(r))
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines", "build", str(path), "--no-progress"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads((tmp_path / out / "manifest.json").read_text())

    def anchors(out: str) -> dict:
        t = pq.read_table(tmp_path / out / "data", columns=["chip_id", "aef_codes", "aef_valid"])
        return {r["chip_id"]: (r["aef_codes"], r["aef_valid"]) for r in t.to_pylist()}

    build(str(DEMO_AEF), "local")
    with serve(RangeHandler, **range_server_attrs(DEMO_AEF)) as srv:
        m = build(srv.url, "remote")
        n_index = len([r for r in srv.log if r.path.endswith(INDEX_NAME)])
        n_requests = len(srv.log)
        m2 = build(srv.url, "remote2")  # a rerun into another folder: index and anchors from the cache
        assert n_index == 1 and len(srv.log) == n_requests
        assert m2["counts"]["chips_kept"] == m["counts"]["chips_kept"]
        agents = {r.user_agent for r in srv.log}
        assert all(a.startswith("sar-triplets/") for a in agents), [
            r for r in srv.log if "GDAL" in r.user_agent
        ][:5]
    assert m["counts"]["chips_kept"] > 0
    local, remote = anchors("local"), anchors("remote")
    assert local.keys() == remote.keys() and local == remote


def test_a_rerun_makes_zero_requests_and_a_corrupt_entry_is_refetched(tmp_path: Path) -> None:
    lon, lat = _demo_points(60, seed=5)
    with serve(RangeHandler, **range_server_attrs(DEMO_AEF)) as srv:
        first = CogEmbeddingProvider(srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        codes, valid = first.sample(lon, lat, 2017)
        n = len(srv.log)
        again = CogEmbeddingProvider(srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        codes2, valid2 = again.sample(lon, lat, 2017)
        assert len(srv.log) == n and again.stats["point_cache_hits"] == 1
        np.testing.assert_array_equal(codes2, codes)
        np.testing.assert_array_equal(valid2, valid)
        entry = next((tmp_path / "points").rglob("*.cache"))
        entry.write_bytes(entry.read_bytes()[:-7])  # truncated by a crash or a full disk
        clear_block_caches()  # else the blocks come from this process's memory: the server sees nothing
        third = CogEmbeddingProvider(srv.url, synthetic=True, user_agent=UA, cache_dir=str(tmp_path))
        codes3, _ = third.sample(lon, lat, 2017)
        assert len(srv.log) > n and third.stats.get("point_cache_hits", 0) == 0
    np.testing.assert_array_equal(codes3, codes)
