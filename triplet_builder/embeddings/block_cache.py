"""The process-wide cache of decompressed AlphaEarth COG blocks.

A block of the mirror's files holds all 64 bands (int8) of 1024 x 1024 px (512 in the synthetic
stand-in): 64 MB (16 MB) to decompress, whatever few pixels a chip needs. A Dask worker builds one
provider per task, and the tasks of a scene are bands of neighbouring chips, so a cache that lives
as long as the provider would decompress every block on a task border twice. The cache lives as
long as the worker process instead, bounded by bytes (least recently used out), keyed by the file's
identity and the block, and holds of each block the lattice of pixels the chips' anchors fall on: with
whole 64 MB blocks a 256 MB bound held four, and a 64-window task across a 25,000 px scene touches a
dozen, so every block was decompressed (and, from a remote mirror, downloaded) four to five times."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class CachedWindow:
    """A cached read of one block of one file: the pixels at raw rows r0, r0 + step_r, ... below r1 and
    columns c0, c0 + step_c, ... below c1 (steps of 1: every pixel of the block).

    The anchors of a scene's chips fall on a regular lattice of the AlphaEarth grid (cell centres every
    chip / grid px); a block read for them keeps only that lattice (`lattice_of`), 1/256 of the block
    for 16 x 16 anchors of 256 px chips, so the cache holds hundreds of blocks, not four."""

    r0: int
    r1: int
    c0: int
    c1: int
    data: np.ndarray  # (64, rows, cols) int8
    step_r: int = 1
    step_c: int = 1

    def covers(self, rows: np.ndarray, cols: np.ndarray) -> bool:
        """Whether every pixel (rows, cols) is held."""
        return bool(
            rows.min() >= self.r0
            and rows.max() < self.r1
            and cols.min() >= self.c0
            and cols.max() < self.c1
            and not ((rows - self.r0) % self.step_r).any()
            and not ((cols - self.c0) % self.step_c).any()
        )

    def take(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, 64) codes of the pixels (rows, cols); `covers` must hold."""
        return self.data[:, (rows - self.r0) // self.step_r, (cols - self.c0) // self.step_c].T


def lattice_of(values: np.ndarray, start: int) -> tuple[int, int]:
    """(first, step): the coarsest lattice first + k * step (first >= start) holding every value; step 1
    (every pixel from `start`) where the values share no common step (a lone row, scattered points)."""
    step = int(np.gcd.reduce(values - values.min())) if values.size > 1 else 0
    if step <= 1:
        return start, 1
    return start + (int(values.min()) - start) % step, step


class BlockCache:
    """Decompressed blocks (all 64 bands) of this process, least recently used first out, bounded by
    `max_bytes`. Keys carry the file's identity (path, and for a local file its size and mtime), so a
    tile rewritten in place is read again. Thread-safe; never pickled (a worker builds its own)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], CachedWindow] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> CachedWindow | None:
        with self._lock:
            win = self._items.get(key)
            if win is not None:
                self._items.move_to_end(key)
            return win

    def put(self, key: tuple[Any, ...], win: CachedWindow) -> None:
        if win.data.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.data.nbytes
            self._items[key] = win
            self.bytes += win.data.nbytes
            while self.bytes > self.max_bytes:
                _, out = self._items.popitem(last=False)
                self.bytes -= out.data.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


_CACHES: dict[int, BlockCache] = {}  # one per distinct bound: a build's providers all share one
_CACHES_LOCK = threading.Lock()


def block_cache(max_bytes: int) -> BlockCache | None:
    """The process-wide block cache of this bound (None for 0: caching off)."""
    if max_bytes <= 0:
        return None
    with _CACHES_LOCK:
        cache = _CACHES.get(max_bytes)
        if cache is None:
            cache = _CACHES[max_bytes] = BlockCache(max_bytes)
        return cache


def clear_block_caches() -> None:
    """Drop every cached block of this process (tests; a long-lived worker between builds)."""
    with _CACHES_LOCK:
        for cache in _CACHES.values():
            cache.clear()
