"""The process-wide cache of decompressed AlphaEarth blocks: shared by the providers of one process (a
Dask worker builds one per task), bounded by bytes, keyed by the file's identity, never stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.triplet_builder.embeddings.test_cog import REAL_WINDOW, TILE_NAME, YEAR, _lonlat, _read_raw
from triplet_builder.embeddings.block_cache import BlockCache, CachedWindow, clear_block_caches
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import build_index


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    clear_block_caches()
    root = tmp_path / "annual"
    (root / "2024" / "13N").mkdir(parents=True)
    shutil.copy(REAL_WINDOW, root / "2024" / "13N" / TILE_NAME)
    build_index(root)
    return root


def _points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data, transform, profile = _read_raw(REAL_WINDOW)
    rows, cols = np.meshgrid(np.arange(data.shape[1]), np.arange(data.shape[2]), indexing="ij")
    lon, lat = _lonlat(transform, profile["crs"].to_string(), rows.ravel(), cols.ravel())
    return lon, lat, data[:, rows.ravel(), cols.ravel()].T  # (N, 64) the file's own codes


def test_a_second_provider_reads_no_block_and_gets_the_same_codes(mirror: Path) -> None:
    lon, lat, want = _points()
    first = CogEmbeddingProvider(str(mirror))
    codes, _ = first.sample(lon, lat, YEAR)
    first.close()  # the end of a task: the blocks stay for the next task of the worker
    second = CogEmbeddingProvider(str(mirror))
    codes2, _ = second.sample(lon, lat, YEAR)
    assert first.stats["block_reads"] >= 1
    assert second.stats["block_reads"] == 0 and second.stats["cache_hits"] == first.stats["block_reads"]
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_array_equal(codes2, want)


def test_cache_off_reads_again_and_a_rewritten_tile_is_not_served_stale(mirror: Path) -> None:
    lon, lat, want = _points()
    CogEmbeddingProvider(str(mirror)).sample(lon, lat, YEAR)
    off = CogEmbeddingProvider(str(mirror), cache_bytes=0)
    off.sample(lon, lat, YEAR)
    assert off.stats["block_reads"] >= 1 and off.stats["cache_hits"] == 0
    # the same path, other bytes (a tile downloaded again): read again, never the old pixels
    tile = next(mirror.rglob(TILE_NAME))
    import rasterio

    with rasterio.open(tile, "r+") as ds:
        arr = ds.read()
        arr[0] = np.where(arr[0] == 127, 126, arr[0] + 1)
        ds.write(arr)
    st = tile.stat()
    os.utime(tile, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = CogEmbeddingProvider(str(mirror))
    codes, _ = again.sample(lon, lat, YEAR)
    assert again.stats["block_reads"] >= 1
    np.testing.assert_array_equal(codes[:, 0], np.where(want[:, 0] == 127, 126, want[:, 0] + 1))


def test_the_cache_is_bounded_by_bytes_least_recently_used_out() -> None:
    def win(n: int) -> CachedWindow:
        return CachedWindow(0, 1, 0, 1, np.zeros(n, dtype=np.int8))

    cache = BlockCache(250)
    cache.put(("a",), win(100))
    cache.put(("b",), win(100))
    assert cache.get(("a",)) is not None  # a is now the most recent
    cache.put(("c",), win(100))  # 300 > 250: b, the least recently used, goes
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and cache.get(("c",)) is not None
    assert cache.bytes == 200 <= cache.max_bytes
    cache.put(("huge",), win(251))  # larger than the bound: never admitted, nothing evicted for it
    assert cache.get(("huge",)) is None and len(cache) == 2
