"""The int8 code <-> float32 value mapping of AlphaEarth (Satellite Embedding V1) embeddings: the meaning
of the `aef_codes` column, shared by the pipeline (quantize) and the trainer (dequantize).

The public COGs store each of the 64 components as an int8 code q in [-127, 127] with -128 as nodata
(masked in every band at once). The value is

    v = sign(q) * (q / 127.5) ** 2

(a square-root companding: NOT the linear q / 127 some libraries document, and NOT uint8). Every
valid de-quantized pixel vector has an L2 norm within about 0.99-1.01. `quantize` is the exact
inverse on the code grid: quantize(dequantize(q)) == q for every q in [-127, 127].
"""

from __future__ import annotations

import numpy as np

NODATA = -128
"""The code of a masked pixel (in every band at once)."""

_SCALE = 127.5


def dequantize(codes: np.ndarray) -> np.ndarray:
    """int8 codes (..., 64) -> float32 values (..., 64); 0.0 where the code is -128 (nodata).

    Keep the validity mask (`~(codes == NODATA).any(-1)`) alongside: a de-quantized 0.0 vector is
    not a valid embedding.
    """
    q = np.asarray(codes)
    if not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"dequantize expects integer (int8) codes, got dtype {q.dtype}")
    if q.dtype == np.uint8:
        raise TypeError("dequantize expects signed int8 codes; uint8 codes are a misread of the files")
    qf = q.astype(np.float32)
    v = np.sign(qf) * np.square(qf / np.float32(_SCALE))
    v[q == NODATA] = 0.0
    return v.astype(np.float32, copy=False)


def quantize(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """float values (..., 64) -> int8 codes (..., 64): q = round(sign(v) * sqrt(|v|) * 127.5).

    Codes are clipped to [-127, 127]; a pixel is written as -128 in every band where `valid`
    (shape values.shape[:-1]) is False or where any of its components is NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 1:
        raise ValueError("quantize expects an array with a trailing band axis, e.g. (..., 64)")
    q = np.rint(np.sign(v) * np.sqrt(np.abs(v)) * _SCALE)
    bad = np.isnan(v).any(axis=-1)
    if valid is not None:
        valid_arr = np.asarray(valid, dtype=bool)
        if valid_arr.shape != v.shape[:-1]:
            raise ValueError(f"valid has shape {valid_arr.shape}, expected {v.shape[:-1]}")
        bad |= ~valid_arr
    q = np.clip(np.nan_to_num(q, nan=0.0), -127, 127).astype(np.int8)
    q[bad] = NODATA
    return q


__all__ = ["NODATA", "dequantize", "quantize"]
