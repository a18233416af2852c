"""The one place where SAR pixel values are converted: any declared scale -> backscatter in dB.

Nodata values and NaN are masks, never values: they become NaN here and `valid` is False there.
Linear power and amplitude must be positive to have a dB value; zero or negative pixels are invalid.
"""

from __future__ import annotations

import numpy as np

from triplet_builder.record import Scale


def to_db(values: np.ndarray, scale: Scale, nodata: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(P, H, W) raw values -> ((P, H, W) float32 dB with NaN where invalid, (H, W) bool valid in ALL bands)."""
    v = np.asarray(values, dtype=np.float32)
    db: np.ndarray
    invalid = ~np.isfinite(v)
    if nodata is not None and np.isfinite(nodata):
        invalid |= v == np.float32(nodata)
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale is Scale.DB:
            db = v.copy()
        elif scale is Scale.LINEAR_POWER:
            invalid |= v <= 0
            db = 10.0 * np.log10(v)
        elif scale is Scale.AMPLITUDE:
            invalid |= v <= 0
            db = 20.0 * np.log10(v)
        else:  # pragma: no cover - enum is closed
            raise ValueError(f"unknown scale {scale}")
    valid = np.asarray(~invalid.any(axis=0))
    db = db.astype(np.float32, copy=False)
    db[:, ~valid] = np.nan
    return db, valid


def db_to_linear_power(db: np.ndarray) -> np.ndarray:
    return np.power(np.float32(10.0), db / np.float32(10.0))


def detect_scale(sample: np.ndarray) -> Scale:
    """Guess the scale of finite sample values: negatives exist only in dB; linear power of land and
    sea has a median well below 1; anything else positive with a large median is amplitude (DN)."""
    v = sample[np.isfinite(sample)]
    if v.size == 0:
        raise ValueError("no finite pixels to detect the scale from")
    if (v < 0).mean() > 0.01:
        return Scale.DB
    med = float(np.median(v))
    return Scale.LINEAR_POWER if med < 2.0 else Scale.AMPLITUDE
