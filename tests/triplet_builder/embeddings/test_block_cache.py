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


def test_blocks_are_read_in_the_order_the_chips_last_need_them(tmp_path: Path) -> None:
    """A task's points come chip by chip, north to south; the next task starts where it ended. Read in
    the file's block order (this bottom-up file: south first), the blocks under the task's last chips
    would be the first out of a small cache; read in the order of their last point, they stay."""
    from tests.triplet_builder.embeddings.test_cog import _tiled_file

    clear_block_caches()
    data, transform = _tiled_file(tmp_path)  # 64 x 64 px, 16 px blocks, raw row 0 the southern edge
    bound = 2 * 64 * 16 * 16 + 7  # two blocks of 64 bands (and a bound no other test shares)
    rows = np.repeat(np.arange(63, -1, -1), 2)  # north to south, one block column
    cols = np.tile([3, 9], 64)
    lon, lat = _lonlat(transform, "EPSG:32613", rows, cols)
    task = CogEmbeddingProvider(str(tmp_path), cache_bytes=bound)
    codes, valid = task.sample(lon, lat, YEAR)
    assert valid.all() and task.stats["block_reads"] == 4
    np.testing.assert_array_equal(codes, data[:, rows, cols].T)
    assert task.drain_counters() == {"cog_block_reads": 4} and task.drain_counters() == {}

    south = rows < 16  # the next task: the southern block row, on the first task's border
    following = CogEmbeddingProvider(str(tmp_path), cache_bytes=bound)
    codes2, _ = following.sample(lon[south], lat[south], YEAR)
    np.testing.assert_array_equal(codes2, data[:, rows[south], cols[south]].T)
    assert following.drain_counters() == {"cog_cache_hits": 1}  # no block decompressed again


def test_the_index_is_read_once_per_process_and_again_when_rebuilt(
    mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triplet_builder.embeddings import cog

    reads: list[str] = []
    real = cog.load_index

    def counted(root: object, **kw: object) -> object:
        reads.append(str(root))
        return real(root, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cog, "load_index", counted)
    lon, lat, want = _points()
    for _ in range(3):  # three tasks of a worker, a provider each
        codes, _ = CogEmbeddingProvider(str(mirror)).sample(lon[:5], lat[:5], YEAR)
        np.testing.assert_array_equal(codes, want[:5])
    assert len(reads) == 1
    index = mirror / "aef_index.parquet"
    st = index.stat()
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the index rebuilt
    CogEmbeddingProvider(str(mirror)).sample(lon[:5], lat[:5], YEAR)
    assert len(reads) == 2
