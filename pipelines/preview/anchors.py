"""The AlphaEarth anchors of a chip as a false-colour image: the first three principal components of the
de-quantized 64-d embeddings (schemas/aef.py), as R, G, B over the chip's G x G anchor grid.

One basis for every chip of the preview (fitted on all their valid anchors), and one stretch per
component (its 2nd-98th percentile over them), so the same colour means a similar embedding in every
card, not just within one. The sign of a principal component is arbitrary; it is fixed (largest loading
positive) so the colours do not flip between runs. Invalid anchors (code -128) are transparent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.aef import NODATA, dequantize

N_COMPONENTS = 3


def principal_axes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) samples -> (mean (D,), axes (k, D) in order of decreasing variance, explained share (k,)),
    k = min(3, D); axes of zero variance (too few or identical samples) are zero rows."""
    mean = values.mean(axis=0)
    centred = values - mean  # (N, D)
    cov = centred.T @ centred / max(len(values) - 1, 1)  # (D, D)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigval)[::-1][:N_COMPONENTS]
    axes = eigvec[:, order].T.copy()  # (k, D)
    var = np.clip(eigval[order], 0.0, None)
    for i in range(len(axes)):
        if var[i] <= 1e-12:
            axes[i] = 0.0
        elif axes[i][np.argmax(np.abs(axes[i]))] < 0:
            axes[i] = -axes[i]
    total = float(np.clip(eigval, 0.0, None).sum())
    share = var / total if total > 0 else np.zeros_like(var)
    return mean, axes, share


def false_colour(
    codes: list[np.ndarray], valid: list[np.ndarray], grids: list[int]
) -> tuple[list[np.ndarray | None], dict[str, Any]]:
    """Per chip: (S, 64) int8 codes, (S,) valid flags and its grid G (S = G * G) -> a (G, G, 4) uint8 RGBA
    image (alpha 0 where the anchor is invalid), or None when the chip has no valid anchor; and a summary
    of the fit (anchors used, explained variance share per component)."""
    masks = []
    for c, v, g in zip(codes, valid, grids, strict=True):
        if c.shape != (g * g, 64) or v.shape != (g * g,):
            raise ValueError(f"anchors: codes {c.shape} and valid {v.shape} do not form a {g} x {g} grid")
        masks.append(v & ~(c == NODATA).any(axis=1))  # (S,)
    pool = [dequantize(c)[m] for c, m in zip(codes, masks, strict=True)]
    samples = np.concatenate(pool).astype(np.float64) if pool else np.zeros((0, 64))
    if len(samples) == 0:
        return [None] * len(codes), {"anchors": 0, "explained": []}
    mean, axes, share = principal_axes(samples)
    proj = (samples - mean) @ axes.T  # (N, k)
    lo, hi = np.percentile(proj, [2.0, 98.0], axis=0)  # (k,) each
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    images: list[np.ndarray | None] = []
    for c, m, g in zip(codes, masks, grids, strict=True):
        if not m.any():
            images.append(None)
            continue
        p = (dequantize(c).astype(np.float64) - mean) @ axes.T  # (S, k)
        rgb = np.zeros((g * g, 3), dtype=np.float64)
        rgb[:, : p.shape[1]] = np.clip((p - lo) / span, 0.0, 1.0)
        rgba = np.zeros((g * g, 4), dtype=np.uint8)
        rgba[:, :3] = np.rint(rgb * 255.0).astype(np.uint8)
        rgba[:, 3] = np.where(m, 255, 0)
        rgba[~m, :3] = 0
        images.append(rgba.reshape(g, g, 4))  # row-major from the top-left, as the image
    return images, {"anchors": len(samples), "explained": [round(float(s), 3) for s in share]}


__all__ = ["false_colour", "principal_axes"]
