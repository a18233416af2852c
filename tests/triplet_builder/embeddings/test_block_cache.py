"""The process-wide cache of decompressed AlphaEarth blocks: shared by the providers of one process (a
Dask worker builds one per task), bounded by bytes, keyed by the file's identity, never stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.triplet_builder.embeddings.test_cog import REAL_WINDOW, TILE_NAME, YEAR, _lonlat, _read_raw
from triplet_builder.embeddings.block_cache import BlockCache, CachedWindow, clear_block_caches, lattice_of
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
    cols = np.tile([3, 4], 64)  # no coarser lattice than every pixel: whole blocks are kept
    lon, lat = _lonlat(transform, "EPSG:32613", rows, cols)
    task = CogEmbeddingProvider(str(tmp_path), cache_bytes=bound)
    codes, valid = task.sample(lon, lat, YEAR)
    assert valid.all() and task.stats["block_reads"] == 4
    np.testing.assert_array_equal(codes, data[:, rows, cols].T)
    assert task.drain_counters() == {"cog_block_reads": 4} and task.drain_counters() == {}
    import pickle

    task.sample(lon[:1], lat[:1], YEAR)  # counted, not drained: a copy shipped now does not report it again
    assert pickle.loads(pickle.dumps(task)).drain_counters() == {}

    south = rows < 16  # the next task: the southern block row, on the first task's border
    following = CogEmbeddingProvider(str(tmp_path), cache_bytes=bound)
    codes2, _ = following.sample(lon[south], lat[south], YEAR)
    np.testing.assert_array_equal(codes2, data[:, rows[south], cols[south]].T)
    assert following.drain_counters() == {"cog_cache_hits": 1}  # no block decompressed again


def test_the_index_is_read_once_per_process_and_again_when_rebuilt(
    mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triplet_builder.embeddings import tiles

    reads: list[str] = []
    real = tiles.load_index

    def counted(root: object, **kw: object) -> object:
        reads.append(str(root))
        return real(root, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tiles, "load_index", counted)
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


def test_lattice_of_finds_the_coarsest_step_holding_every_value() -> None:
    assert lattice_of(np.array([8, 24, 40, 56]), 0) == (8, 16)
    assert lattice_of(np.array([520, 536, 568]), 512) == (520, 16)
    assert lattice_of(np.array([546, 562]), 512) == (514, 16)  # the lattice reaches back to the block start
    assert lattice_of(np.array([7, 8, 24]), 0) == (0, 1)  # no common step: every pixel
    assert lattice_of(np.array([9]), 0) == (0, 1)  # a lone row says nothing of a step
    assert lattice_of(np.array([9, 9, 9]), 0) == (0, 1)


def test_a_block_keeps_the_anchor_lattice_and_serves_only_what_it_holds(tmp_path: Path) -> None:
    """Anchors on a lattice (every 4th pixel here, every 16th for 256 px chips): the cache keeps that
    lattice of the block (1/16 of it), serves later points on it without a read, and reads the block
    again for a point off it; every code equals the file's."""
    from tests.triplet_builder.embeddings.test_cog import _tiled_file
    from triplet_builder.embeddings.block_cache import block_cache

    clear_block_caches()
    data, transform = _tiled_file(tmp_path)  # 16 px blocks
    bound = 10 * 64 * 16 * 16 + 11
    rr, cc = np.meshgrid([2, 6, 10, 14], [1, 5, 9, 13], indexing="ij")  # raw pixels of block (0, 0)

    def sample(rows: np.ndarray, cols: np.ndarray) -> CogEmbeddingProvider:
        lon, lat = _lonlat(transform, "EPSG:32613", rows, cols)
        p = CogEmbeddingProvider(str(tmp_path), cache_bytes=bound)
        codes, valid = p.sample(lon, lat, YEAR)
        assert valid.all()
        np.testing.assert_array_equal(codes, data[:, rows, cols].T)
        return p

    assert sample(rr[:2].ravel(), cc[:2].ravel()).stats["block_reads"] == 1  # rows 2, 6: step 4
    cache = block_cache(bound)
    assert cache is not None and cache.bytes == 64 * 4 * 4  # rows 2, 6, 10, 14 x 4 columns of 64 bands
    later = sample(rr[2:].ravel(), cc[2:].ravel())  # rows 10, 14: on the kept lattice
    assert later.stats["block_reads"] == 0 and later.stats["cache_hits"] == 1
    off = sample(np.array([3, 6]), np.array([1, 5]))  # row 3 is not on it: read again
    assert off.stats["block_reads"] == 1 and off.stats["cache_hits"] == 0
