"""The map pixel under each chip pixel centre, exactly as projecting every centre would give it, for the cost
of projecting a few hundred of them.

The `land_cover` stage takes, for every output pixel of a chip, the map pixel holding the pixel's centre:
chip pixel -> scene CRS -> lon/lat -> the map's continuous pixel coordinates (row, col) -> floor. Projecting
all 65,536 centres of a 256 px chip through pyproj was most of the stage's time. The composite map is smooth,
so here it is projected exactly on a coarse lattice of the chip's own pixels (every `STEP`-th row and column,
and the last), interpolated bilinearly in between, and projected exactly again wherever the interpolated
coordinate lies within `eps` of a pixel edge, where flooring it could go either way. Elsewhere the floor of
the interpolated coordinate IS the floor of the exact one, provided `eps` bounds the interpolation error:

    |bilinear error| <= (hy^2 max|f_yy| + hx^2 max|f_xx|) / 8

with f'' estimated from second divided differences of the lattice itself, times `SAFETY` (16: a jump between
two lattice nodes, e.g. a datum operation switching or the antimeridian, shows in those differences at about
its own size, so eps covers at least twice the jump), plus a floor for rounding. A chip whose bound reaches
half a pixel, whose lattice is not finite, or that is too small for a lattice is projected in full. The exact
points go through the very same code and arithmetic as a full projection (pyproj and NumPy work element by
element), so the indices, and every fraction computed from them, are identical to projecting every centre
(tests/triplet_builder/sources/test_map_pixels.py checks this on many grids, CRSs and latitudes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from triplet_builder.earthengine import MAX_GRID_SIDE
from triplet_builder.embeddings.earthengine import cluster_points
from triplet_builder.geo import SceneGeo
from triplet_builder.record import Window

STEP = 16  # lattice spacing in chip pixels: 17 x 17 exact points for a 256 px chip
SAFETY = 16.0  # eps = SAFETY x the estimated interpolation error (+ the rounding floor)
ABS_FLOOR = 1e-6  # pixels: far above float64 rounding of coordinates below ~1e7, far below any map pixel
REL_FLOOR = 1e-12  # of the coordinates' magnitude (a global WorldCover column reaches 4.3e6)
INDEX_CLIP = 2.0**31 - 1  # continuous coordinates are clipped to [-1, 2^31 - 1] before the cast to int32

# (lon, lat) (N,) -> the map's continuous (row, col) (N,), NaN or inf where the map cannot place a point
PixelCoords = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# (r0, r1, c0, c1) -> the raster's [r0, r1) x [c0, c1) window
ReadWindow = Callable[[int, int, int, int], np.ndarray]
# (rows, cols, ok) of one chip's pixels: int32 indices, and where they hold one
Pixels = tuple[np.ndarray, np.ndarray, np.ndarray]


def floor_index(rows: np.ndarray, cols: np.ndarray) -> Pixels:
    """(row, col) int32 of the pixels holding continuous coordinates, and where both are finite. Values are
    clipped to [-1, 2^31 - 1] first: a raster is never that large, so a map rejects -1 and anything past
    its size the same way either way (WorldCover's 4.3e6 global columns fit)."""
    ok = np.isfinite(rows) & np.isfinite(cols)
    r = np.floor(np.clip(np.where(ok, rows, 0.0), -1.0, INDEX_CLIP)).astype(np.int32)
    c = np.floor(np.clip(np.where(ok, cols, 0.0), -1.0, INDEX_CLIP)).astype(np.int32)
    return r, c, ok


def _boxes(seen: np.ndarray, max_pixels: int, max_side: int, min_fill: float) -> list[tuple[int, ...]]:
    """`cluster_points` on an occupancy bitmap: the same grids, as (y0, y1, x0, x1) inclusive, in the same
    order. Each subset cluster_points forms is the set of points inside a rectangle, so its bounding box
    is the rectangle's occupied rows and columns: boolean scans of the box instead of integer gathers."""

    def tight(y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
        sub = seen[y0 : y1 + 1, x0 : x1 + 1]
        ys, xs = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        return y0 + int(ys[0]), y0 + int(ys[-1]), x0 + int(xs[0]), x0 + int(xs[-1])

    def area(b: tuple[int, int, int, int]) -> int:
        return (b[1] - b[0] + 1) * (b[3] - b[2] + 1)

    out: list[tuple[int, ...]] = []
    stack = [tight(0, seen.shape[0] - 1, 0, seen.shape[1] - 1)]
    while stack:
        y0, y1, x0, x1 = box = stack.pop()
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w == 1 and h == 1:
            out.append(box)
            continue
        if w >= h:
            mid = (x0 + x1) // 2
            a, b = tight(y0, y1, x0, mid), tight(y0, y1, mid + 1, x1)
        else:
            mid = (y0 + y1) // 2
            a, b = tight(y0, mid, x0, x1), tight(mid + 1, y1, x0, x1)
        too_big = w * h > max_pixels or max(w, h) > max_side
        if not too_big and area(a) + area(b) >= min_fill * w * h:
            out.append(box)
            continue
        stack.extend([b, a])
    return out


def gather_pixels(
    parts: list[tuple[np.ndarray, np.ndarray]], read: ReadWindow, dtype: Any, *, max_pixels: int
) -> list[np.ndarray]:
    """The values of raster pixels (rows, cols) (integers, all inside the raster), part by part (a part per
    chip: no batch-long arrays), read in the windows that `cluster_points(cols, rows, max_pixels=...)` lays
    over the distinct pixels of all parts: as few as the size limit allows, none over a mostly empty box
    between clumps far apart. `read(r0, r1, c0, c1)` returns the raster's [r0, r1) x [c0, c1) window."""
    full = [(r, c) for r, c in parts if r.size]
    if not full:
        return [np.zeros(r.size, dtype=dtype) for r, _ in parts]
    r0, c0 = min(int(r.min()) for r, _ in full), min(int(c.min()) for _, c in full)
    height = max(int(r.max()) for r, _ in full) - r0 + 1
    span = max(int(c.max()) for _, c in full) - c0 + 1
    n = sum(r.size for r, _ in parts)
    if height * span <= 2 * n + (1 << 22):  # a bitmap of the box costs about what the points do
        seen = np.zeros(height * span, dtype=bool)
        for r, c in full:
            seen[(r - r0) * span + (c - c0)] = True  # row-major in the points' bounding box
        box_values = np.zeros((height, span), dtype=dtype)
        for y0, y1, x0, x1 in _boxes(seen.reshape(height, span), max_pixels, MAX_GRID_SIDE, 0.5):
            box_values[y0 : y1 + 1, x0 : x1 + 1] = read(r0 + y0, r0 + y1 + 1, c0 + x0, c0 + x1 + 1)
        flat = box_values.reshape(-1)
        return [flat[(r - r0) * span + (c - c0)] for r, c in parts]
    # a sparse box: each distinct pixel once, in (row, col) order, then cluster_points itself
    lin = np.concatenate([(r.astype(np.int64) - r0) * span + (c - c0) for r, c in parts])
    distinct, inverse = np.unique(lin, return_inverse=True)
    pr, pc = distinct // span + r0, distinct % span + c0
    got = np.zeros(distinct.size, dtype=dtype)
    for cl in cluster_points(pc, pr, max_pixels=max_pixels):
        data = read(cl.iy0, cl.iy1 + 1, cl.ix0, cl.ix1 + 1)
        got[cl.members] = data[pr[cl.members] - cl.iy0, pc[cl.members] - cl.ix0]
    return np.split(got[inverse.reshape(-1)], np.cumsum([r.size for r, _ in parts])[:-1])


def gather_where(
    parts: list[Pixels], read: ReadWindow, dtype: Any, out_dtype: Any, *, max_pixels: int
) -> list[np.ndarray]:
    """`gather_pixels` of each part's pixels where its mask holds; 0 elsewhere, as `out_dtype`."""
    picked = [(r, c) if m.all() else (r[m], c[m]) for r, c, m in parts]
    got = gather_pixels(picked, read, dtype, max_pixels=max_pixels)
    out = []
    for (r, _, m), g in zip(parts, got, strict=True):
        v = np.zeros(r.size, dtype=out_dtype)
        v[m] = g
        out.append(v)
    return out


def exact_coords(
    geo: SceneGeo, window: Window, i: np.ndarray, j: np.ndarray, to_pixel: PixelCoords
) -> tuple[np.ndarray, np.ndarray]:
    """The map coordinates of chip pixel centres (i, j), each projected: what the stage always computed."""
    y = (np.asarray(i, dtype=np.int64) + 0.5) / window.out_height
    x = (np.asarray(j, dtype=np.int64) + 0.5) / window.out_width
    lon, lat = geo.chip_pixel_to_lonlat(window, y, x)
    r, c = to_pixel(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)


def _nodes(n: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, n, STEP), n - 1])


def _max_second_derivative(v: np.ndarray, nodes: np.ndarray, axis: int) -> float:
    """max |f''| along `axis` of lattice values `v`, from second divided differences (uneven spacing)."""
    v = np.moveaxis(v, axis, 0)
    h = np.diff(nodes).astype(np.float64)
    slope = np.diff(v, axis=0) / h[:, None]
    second = 2.0 * np.diff(slope, axis=0) / (h[:-1] + h[1:])[:, None]
    return float(np.abs(second).max())


def _bilinear(v: np.ndarray, ni: np.ndarray, nj: np.ndarray, h: int, w: int) -> np.ndarray:
    """Lattice values (len(ni), len(nj)) interpolated at every pixel (h, w)."""

    def weights(nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        p = np.arange(n)
        k = np.clip(np.searchsorted(nodes, p, side="right") - 1, 0, len(nodes) - 2)
        return k, (p - nodes[k]) / (nodes[k + 1] - nodes[k])

    ki, ti = weights(ni, h)
    kj, tj = weights(nj, w)
    across = v[:, kj] * (1.0 - tj) + v[:, kj + 1] * tj  # (len(ni), w)
    out: np.ndarray = across[ki] * (1.0 - ti)[:, None] + across[ki + 1] * ti[:, None]
    return out


def chip_map_index(geo: SceneGeo, window: Window, to_pixel: PixelCoords) -> tuple[Pixels, int]:
    """(row, col, ok) of the map pixel under each output pixel centre of the chip, row-major (h * w,), as
    `floor_index(exact_coords(...))` of every pixel gives them; and how many centres were projected."""
    h, w = window.out_height, window.out_width
    if min(h, w) >= 2 * STEP + 1:
        ni, nj = _nodes(h), _nodes(w)
        gi, gj = np.meshgrid(ni, nj, indexing="ij")
        lattice = exact_coords(geo, window, gi.ravel(), gj.ravel(), to_pixel)
        grids = [v.reshape(len(ni), len(nj)) for v in lattice]
        if all(np.isfinite(g).all() for g in grids):
            hi, hj = float(np.diff(ni).max()), float(np.diff(nj).max())
            coords, near = [], np.zeros(h * w, dtype=bool)
            for g in grids:
                err = (
                    hi**2 * _max_second_derivative(g, ni, 0) + hj**2 * _max_second_derivative(g, nj, 1)
                ) / 8.0
                eps = SAFETY * err + ABS_FLOOR + REL_FLOOR * float(np.abs(g).max())
                if not eps < 0.5:
                    break  # not smooth at the lattice's scale: project every centre
                v = _bilinear(g, ni, nj, h, w).ravel()
                near |= np.abs(v - np.round(v)) <= eps
                coords.append(v)
            else:
                idx = np.flatnonzero(near)
                r, c = exact_coords(geo, window, idx // w, idx % w, to_pixel)
                coords[0][idx], coords[1][idx] = r, c
                return floor_index(coords[0], coords[1]), gi.size + idx.size
    i, j = np.divmod(np.arange(h * w), w)
    return floor_index(*exact_coords(geo, window, i, j, to_pixel)), h * w


__all__ = [
    "PixelCoords",
    "Pixels",
    "ReadWindow",
    "chip_map_index",
    "exact_coords",
    "floor_index",
    "gather_pixels",
    "gather_where",
]
