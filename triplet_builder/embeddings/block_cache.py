"""The process-wide cache of decompressed AlphaEarth COG blocks.

A block of the mirror's files holds all 64 bands (int8) of 1024 x 1024 px (512 in the synthetic
stand-in): 64 MB (16 MB) to decompress, whatever few pixels a chip needs. A Dask worker builds one
provider per task, and the tasks of a scene are bands of neighbouring chips, so a cache that lives
as long as the provider would decompress every block on a task border twice. The cache lives as
long as the worker process instead, bounded by bytes (least recently used out), keyed by the file's
identity and the block."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class CachedWindow:
    """A cached read: raw pixel rows [r0, r1) and columns [c0, c1) of one block of one file."""

    r0: int
    r1: int
    c0: int
    c1: int
    data: np.ndarray  # (64, r1 - r0, c1 - c0) int8

    def covers(self, r0: int, r1: int, c0: int, c1: int) -> bool:
        return self.r0 <= r0 and self.c0 <= c0 and self.r1 >= r1 and self.c1 >= c1


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
