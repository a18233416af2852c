"""The optional full-precision backscatter column (`backscatter_db`): the chip's dB values as they left
the tile stage, for users who need radiometry (the PNG is an 8-bit stretch that saturates on bright
targets).

Encoding: a NumPy `.npy` file (little-endian float32, C order, shape (P, H, W) = polarisations x rows x
columns, polarisation order = the row's `polarisations`), compressed with zlib (DEFLATE). Values are
10 log10 of the row's `backscatter` quantity (sigma0 / gamma0 / beta0) in dB; NaN = invalid (nodata, the
PNG's alpha 0). Decoding needs numpy alone: `np.load(io.BytesIO(zlib.decompress(data)))`.
"""

from __future__ import annotations

import io
import zlib

import numpy as np

DTYPE = np.dtype("<f4")
ZLIB_LEVEL = 6


def encode_backscatter(db: np.ndarray) -> bytes:
    """(P, H, W) dB -> the column's bytes (float32 .npy, zlib); raises ValueError for another shape."""
    if db.ndim != 3:
        raise ValueError(f"encode_backscatter: expected a (P, H, W) array, got shape {db.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(db, dtype=DTYPE), allow_pickle=False)
    return zlib.compress(buf.getvalue(), ZLIB_LEVEL)


def decode_backscatter(data: bytes) -> np.ndarray:
    """The column's bytes -> (P, H, W) float32 dB, NaN where invalid."""
    try:
        arr = np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False)
    except (zlib.error, ValueError, OSError) as e:
        raise ValueError(f"backscatter_db is not a zlib-compressed float32 .npy array ({e})") from None
    if arr.ndim != 3 or arr.dtype != DTYPE:
        raise ValueError(
            f"backscatter_db holds a {arr.dtype} array of shape {arr.shape}, expected (P, H, W) float32"
        )
    return arr


__all__ = ["DTYPE", "decode_backscatter", "encode_backscatter"]
