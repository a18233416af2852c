"""Surface facts of a chip: how much of it is valid, smooth dark water, land and bright scatterers,
overall and per FUSAR-GPT 3 x 3 cell (numbered 1..9 row-major from the top-left).

Water is the smooth dark surface of the co-polarised band (VV or HH) after a 3 x 3 median filter that
suppresses speckle. The median is taken over the VALID pixels of each 3 x 3 window only, so NaN never
leaks in; on fully valid data the result is identical to thresholding `scipy.ndimage.median_filter`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import ndimage

from schemas import frames

logger = logging.getLogger(__name__)

CO_POL = ("VV", "HH")
CROSS_POL = ("VH", "HV")
WATER_THRESHOLD_CO_DB = -18.0
WATER_THRESHOLD_CROSS_DB = -24.0


# -- the 3 x 3 grid (the convention lives in schemas/frames.py) ---------------------------------------
def cell_index_map(height: int, width: int) -> np.ndarray:
    """(H, W) int8 map of the cell number (1..9) of every pixel (schemas.frames.cell_index_map)."""
    return frames.cell_index_map(height, width)


def cell_of(x: float, y: float, width: int, height: int) -> int:
    """Cell number (1..9) of a continuous chip position (x right, y down, in pixels), cut in normalized
    coordinates (schemas.frames.cell_of); positions outside the chip are clamped to the nearest cell."""
    return frames.cell_of(x / width, y / height)


# -- water --------------------------------------------------------------------------------------------
def reference_band(polarisations: tuple[str, ...]) -> int:
    """Index of the band the surface is judged on: the first co-pol band (VV/HH), else the first band."""
    for i, pol in enumerate(polarisations):
        if pol.upper() in CO_POL:
            return i
    return 0


def default_water_threshold(polarisations: tuple[str, ...]) -> float:
    """-18 dB when a co-pol (or unknown) band exists, -24 dB for cross-pol-only data."""
    pols = [p.upper() for p in polarisations]
    if pols and all(p in CROSS_POL for p in pols):
        return WATER_THRESHOLD_CROSS_DB
    return WATER_THRESHOLD_CO_DB


def _dark_majority(band: np.ndarray, ok: np.ndarray, thr: float) -> np.ndarray:
    """(H, W) bool: the median of the valid pixels of each 3 x 3 window is below thr (strict majority dark).

    Over a window (borders reflected, as median_filter), 2 x dark > valid is the sum of 2 x dark - valid
    above 0, and that per-pixel term is -1 (valid, not dark), 0 (invalid) or 1 (dark, hence valid): one
    integer correlation of it instead of two counts."""
    with np.errstate(invalid="ignore"):
        dark = ok & (band < thr)
    term = dark.astype(np.int8) * 2 - ok.astype(np.int8)  # (H, W) in {-1, 0, 1}; a window sums to [-9, 9]
    return ndimage.correlate(term, np.ones((3, 3), dtype=np.int8), mode="reflect") > 0


def water_mask(
    db: np.ndarray,
    valid: np.ndarray,
    polarisations: tuple[str, ...],
    water_threshold_db: float | None = None,
    cross_threshold_db: float | None = None,
) -> tuple[np.ndarray, float]:
    """((H, W) bool water mask, threshold used) for a (P, H, W) dB chip.

    A valid pixel is water when the median of the valid pixels of its 3 x 3 window in the reference band
    is below the threshold, i.e. when a strict majority of them is darker than the threshold.
    Dual-pol rule: with `cross_threshold_db` and both a co-pol and a cross-pol band, a pixel is water only
    when BOTH hold, the co-pol median below `water_threshold_db` AND the cross-pol median below
    `cross_threshold_db` (and the pixel is valid in both). Requiring both rejects surfaces dark in one
    band only (smooth tarmac or dry sand in co-pol, sparse vegetation in cross-pol); wind-roughened water,
    bright in co-pol, is then missed: a conservative choice, missed water rather than invented water.
    """
    if db.ndim != 3 or db.shape[1:] != valid.shape:
        raise ValueError(f"db must be (P, H, W) and valid (H, W); got {db.shape} and {valid.shape}")
    if len(polarisations) != db.shape[0]:
        raise ValueError(f"{len(polarisations)} polarisations given for {db.shape[0]} bands")
    thr = default_water_threshold(polarisations) if water_threshold_db is None else float(water_threshold_db)
    band = db[reference_band(polarisations)]  # (H, W)
    ok = valid & np.isfinite(band)
    water = ok & _dark_majority(band, ok, thr)
    cross = _cross_band(polarisations)
    if cross_threshold_db is not None and cross is not None and cross != reference_band(polarisations):
        cband = db[cross]  # (H, W)
        cok = ok & np.isfinite(cband)
        water &= cok & _dark_majority(cband, cok, float(cross_threshold_db))
    return water, thr


def _cross_band(polarisations: tuple[str, ...]) -> int | None:
    """Index of the first cross-pol band (VH/HV), None without one."""
    return next((i for i, p in enumerate(polarisations) if p.upper() in CROSS_POL), None)


# -- the facts ----------------------------------------------------------------------------------------
def _frac(num: int | np.integer, den: int | np.integer) -> float:
    return round(float(num) / float(den), 3) if den > 0 else 0.0


def surface_facts(
    db: np.ndarray,
    valid: np.ndarray,
    polarisations: tuple[str, ...],
    water_threshold_db: float | None = None,
    bright_threshold_db: float = 0.0,
    water: tuple[np.ndarray, float] | None = None,
) -> dict[str, Any]:
    """The facts "surface" object of a (P, H, W) float32 dB chip with its (H, W) valid mask.

    All fractions except valid_fraction are over VALID pixels (valid and finite in the reference band)
    and rounded to 3 decimals. mean_db / std_db are of the reference band (first co-pol band); with no
    valid pixel at all they are 0.0 and every fraction is 0.
    """
    # `water`: the (mask, threshold) of water_mask(...) when the caller already has it (CFAR needs it too)
    wmask, thr = water if water is not None else water_mask(db, valid, polarisations, water_threshold_db)
    band = db[reference_band(polarisations)]  # (H, W)
    ok = valid & np.isfinite(band)
    with np.errstate(invalid="ignore"):
        bright = ok & (band > bright_threshold_db)
    h, w = ok.shape
    n_ok = int(ok.sum())
    n_water = int(wmask.sum())
    values = band[ok]  # (n_ok,)
    mean_db = round(float(values.mean(dtype=np.float64)), 2) if n_ok else 0.0
    std_db = round(float(values.std(dtype=np.float64)), 2) if n_ok else 0.0

    # one count of (cell, valid, water, bright) codes; water and bright pixels are valid ones
    code = cell_index_map(h, w).astype(np.int16) * 8 + ok * 4 + wmask * 2 + bright  # (H, W) in 0..79
    counts = np.bincount(code.ravel(), minlength=80).reshape(10, 2, 2, 2)  # [cell, valid, water, bright]
    n_pix = counts.sum(axis=(1, 2, 3))
    n_ok_c = counts[:, 1].sum(axis=(1, 2))
    n_water_c = counts[:, 1, 1].sum(axis=1)
    n_bright_c = counts[:, 1, :, 1].sum(axis=1)
    cell_facts = [
        {
            "cell": c,
            "water_fraction": _frac(int(n_water_c[c]), int(n_ok_c[c])),
            "bright_fraction": _frac(int(n_bright_c[c]), int(n_ok_c[c])),
            "valid_fraction": _frac(int(n_ok_c[c]), int(n_pix[c])),
        }
        for c in range(1, 10)
    ]
    return {
        "valid_fraction": _frac(n_ok, h * w),
        "water_fraction": _frac(n_water, n_ok),
        "land_fraction": round(1.0 - n_water / n_ok, 3) if n_ok else 0.0,
        "bright_fraction": _frac(int(bright.sum()), n_ok),
        "water_threshold_db": thr,
        "bright_threshold_db": float(bright_threshold_db),
        "mean_db": mean_db,
        "std_db": std_db,
        "cells": cell_facts,
    }
