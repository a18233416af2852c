"""A cell-averaging CFAR detector of bright point targets (ships, platforms, corner reflectors).

Works in LINEAR power. For every pixel the clutter mean is estimated over a square training ring (the
outer window minus the guard window around the pixel) from box sums of the power and of the valid mask,
so invalid pixels and pixels outside the chip never count. For exponential (single-look speckle)
clutter with N training cells the threshold factor giving the false-alarm probability PFA is
alpha = N * (PFA ** (-1 / N) - 1); N is the number of valid training cells of each pixel. A detection
must also be brighter than an absolute floor (min_db) so that bright land clutter is not called a
target. Detections are grouped into 8-connected components and described in chip pixels.

Targets are detected where they are, not per chip: `detect` runs on the chip's CONTEXT, the chip plus
`margin = CfarParams.margin` pixels on every side (nodata beyond the scene edge), and a component belongs
to the chip when its PEAK (brightest pixel; ties: first in row-major order) lies inside the chip. Pixels
farther than `max_extent_px` beyond the chip are never detections (their rings would leave the
context); a component reaching that distance may be cut, so it is dropped, and so is any component
whose box spans more than `max_extent_px` pixels: such a target is dropped in every chip. Any two
chips whose contexts hold a target therefore report it identically (same peak in scene pixels, same
area, same length); its box is clipped to the chip.

Size: length_m (box diagonal x pixel size) is stated only when the component spans at least
MIN_MEASURABLE_PX pixels along the longer side of its box; a smaller target is a point target of
unknown size (length_m null).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from schemas.codec import db_to_linear_power
from triplet_builder.facts.surface import cell_of

logger = logging.getLogger(__name__)

LENGTH_METHOD = "bbox_diagonal"  # length_m = diagonal of the component's box x pixel size
MIN_MEASURABLE_PX = 3  # a length is stated only when the box spans this many pixels along its longer side


@dataclass(frozen=True)
class CfarParams:
    """CA-CFAR settings. Windows are in chip pixels: guard and train are half-widths of rings."""

    pfa: float = 1e-6
    guard: int = 2
    train: int = 8
    min_db: float | None = 0.0  # absolute floor (co-pol default); None: no floor
    min_area_px: int = 1
    max_area_px: int = 400
    max_extent_px: int = 40  # longest side of a target's box; also how far beyond the chip one may reach
    water_only: bool = False
    min_train_fraction: float = 0.5  # pixels with fewer valid training cells are not tested

    def __post_init__(self) -> None:
        if not 0.0 < self.pfa < 1.0:
            raise ValueError(f"CfarParams.pfa must be in (0, 1), got {self.pfa}")
        if self.guard < 0 or self.train < 1:
            raise ValueError(f"CfarParams: guard must be >= 0 and train >= 1, got {self.guard}, {self.train}")
        if not 1 <= self.min_area_px <= self.max_area_px:
            raise ValueError(
                f"CfarParams: need 1 <= min_area_px <= max_area_px, got {self.min_area_px}, {self.max_area_px}"
            )
        if self.max_extent_px < 1:
            raise ValueError(f"CfarParams.max_extent_px must be >= 1, got {self.max_extent_px}")
        if not 0.0 < self.min_train_fraction <= 1.0:
            raise ValueError(
                f"CfarParams.min_train_fraction must be in (0, 1], got {self.min_train_fraction}"
            )

    @property
    def outer(self) -> int:
        """Side of the outer window."""
        return 2 * (self.guard + self.train) + 1

    @property
    def inner(self) -> int:
        """Side of the guard window (cell under test included)."""
        return 2 * self.guard + 1

    @property
    def margin(self) -> int:
        """Context pixels needed on every side of a chip: the farthest target pixel (max_extent_px) plus
        its guard and training ring."""
        return self.max_extent_px + self.guard + self.train

    @property
    def n_train(self) -> int:
        """Nominal number of training cells of the ring."""
        return self.outer**2 - self.inner**2


def alpha_for(pfa: float, n: np.ndarray | float) -> np.ndarray:
    """CA-CFAR threshold factor for exponential clutter with n training cells."""
    n_a = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_a > 0, n_a * (np.power(pfa, -1.0 / np.maximum(n_a, 1.0)) - 1.0), np.inf)


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum of `a` over a size x size window centred on each pixel; outside the array counts as 0."""
    return ndimage.uniform_filter(a, size=size, mode="constant", cval=0.0) * float(size * size)


def threshold_map(
    db_band: np.ndarray, valid: np.ndarray, params: CfarParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(threshold in linear power, clutter mean in linear power, valid training cells) per pixel,
    each (H, W); the threshold is +inf where fewer than min_train_fraction of the ring is valid."""
    ok = valid & np.isfinite(db_band)  # (H, W)
    power = np.where(ok, db_to_linear_power(np.where(ok, db_band, 0.0)), 0.0).astype(np.float64)
    okf = ok.astype(np.float64)
    ring_sum = _box_sum(power, params.outer) - _box_sum(power, params.inner)
    ring_n = np.rint(_box_sum(okf, params.outer) - _box_sum(okf, params.inner))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ring_n > 0, np.maximum(ring_sum, 0.0) / np.maximum(ring_n, 1.0), np.nan)
    enough = ring_n >= params.min_train_fraction * params.n_train
    # alpha depends only on the (integer) count of valid training cells: one value per distinct count
    counts, inverse = np.unique(ring_n.astype(np.int64), return_inverse=True)
    alpha = alpha_for(params.pfa, counts)[inverse].reshape(ring_n.shape)
    thr = np.where(enough, alpha * mean, np.inf)
    return thr, mean, ring_n.astype(np.int32)


# the floor's candidates are summed window by window while that touches at most this many times the
# context's pixels; beyond it (dense bright areas) two summed-area tables of the whole context are cheaper
GATHER_MAX_RATIO = 2.0


def _ring_stats(
    db_band: np.ndarray, ok: np.ndarray, ys: np.ndarray, xs: np.ndarray, params: CfarParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(power, ring power sum, valid ring count) at the pixels (ys, xs), each (K,), from their own
    outer windows gathered out of a zero-padded copy (outside the array and invalid pixels count as 0,
    like _box_sum): K x outer^2 values, not two summed-area tables of the whole context."""
    r, g = params.outer // 2, params.train
    pad_db = np.pad(np.where(ok, db_band, 0.0).astype(db_band.dtype, copy=False), r)
    pad_ok = np.pad(ok, r)
    shape = (params.outer, params.outer)
    win_ok = sliding_window_view(pad_ok, shape)[ys, xs]  # (K, outer, outer): the window centred on each
    win_p = np.where(win_ok, db_to_linear_power(sliding_window_view(pad_db, shape)[ys, xs]), 0.0).astype(
        np.float64
    )
    inner = (slice(None), slice(g, g + params.inner), slice(g, g + params.inner))
    ring_sum = win_p.sum(axis=(1, 2)) - win_p[inner].sum(axis=(1, 2))
    ring_n = win_ok.sum(axis=(1, 2), dtype=np.int64) - win_ok[inner].sum(axis=(1, 2), dtype=np.int64)
    return win_p[:, r, r], ring_sum, ring_n.astype(np.float64)


def _window_sums(table: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Sums over size x size windows centred on (ys, xs) from a zero-padded summed-area table;
    outside the array counts as 0 (like _box_sum)."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    r = size // 2
    y0, y1 = np.clip(ys - r, 0, h), np.clip(ys + r + 1, 0, h)
    x0, x1 = np.clip(xs - r, 0, w), np.clip(xs + r + 1, 0, w)
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def _summed_area(a: np.ndarray) -> np.ndarray:
    t = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(a, axis=0, dtype=np.float64), axis=1, out=t[1:, 1:])
    return t


def _ring_stats_tables(
    db_band: np.ndarray, ok: np.ndarray, ys: np.ndarray, xs: np.ndarray, params: CfarParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_ring_stats from two summed-area tables of the whole context (cheaper when K is large)."""
    power = np.where(ok, db_to_linear_power(np.where(ok, db_band, 0.0)), 0.0).astype(np.float64)
    p_tab, n_tab = _summed_area(power), _summed_area(ok.astype(np.float64))
    ring_sum = _window_sums(p_tab, ys, xs, params.outer) - _window_sums(p_tab, ys, xs, params.inner)
    ring_n = np.rint(_window_sums(n_tab, ys, xs, params.outer) - _window_sums(n_tab, ys, xs, params.inner))
    return power[ys, xs], ring_sum, ring_n


def detection_mask(db_band: np.ndarray, valid: np.ndarray, params: CfarParams) -> np.ndarray:
    """(H, W) bool: pixels above the CFAR threshold and the absolute floor.

    With a floor (min_db), only the pixels above it can be detections, and in SAR chips they are few:
    their ring statistics are summed over their own windows alone (the same sums as threshold_map's box
    filters), so a chip with no bright pixel costs one comparison."""
    if params.min_db is None:
        return _detection_mask_dense(db_band, valid, params)
    ok = valid & np.isfinite(db_band)
    with np.errstate(invalid="ignore"):
        cand = ok & (db_band >= params.min_db)
    hit = np.zeros(db_band.shape, dtype=bool)
    ys, xs = np.nonzero(cand)
    if ys.size == 0:
        return hit
    if ys.size * params.outer**2 <= GATHER_MAX_RATIO * db_band.size:
        power, ring_sum, ring_n = _ring_stats(db_band, ok, ys, xs, params)
    else:  # many bright pixels (a town, a bright edge): summed-area tables of the whole context are cheaper
        power, ring_sum, ring_n = _ring_stats_tables(db_band, ok, ys, xs, params)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ring_n > 0, np.maximum(ring_sum, 0.0) / np.maximum(ring_n, 1.0), np.nan)
        thr = np.where(
            ring_n >= params.min_train_fraction * params.n_train, alpha_for(params.pfa, ring_n) * mean, np.inf
        )
        hit[ys, xs] = power > thr
    return hit


def _detection_mask_dense(db_band: np.ndarray, valid: np.ndarray, params: CfarParams) -> np.ndarray:
    """detection_mask over the whole chip (no floor): box filters for every pixel."""
    thr, _, _ = threshold_map(db_band, valid, params)
    ok = valid & np.isfinite(db_band)
    with np.errstate(invalid="ignore", over="ignore"):
        power = db_to_linear_power(np.where(ok, db_band, -np.inf)).astype(np.float64)
        hit = ok & (power > thr)
        if params.min_db is not None:
            hit &= db_band >= params.min_db
    return hit


def _chebyshev_to_chip(shape: tuple[int, int], margin: int) -> np.ndarray:
    """(H + 2m, W + 2m) int: Chebyshev distance of each context pixel to the chip (0 inside it)."""
    hh, ww = shape
    h, w = hh - 2 * margin, ww - 2 * margin
    dy = np.maximum(np.maximum(margin - np.arange(hh), np.arange(hh) - (margin + h - 1)), 0)  # (H + 2m,)
    dx = np.maximum(np.maximum(margin - np.arange(ww), np.arange(ww) - (margin + w - 1)), 0)  # (W + 2m,)
    return np.maximum(dy[:, None], dx[None, :])


def detect(
    db_band: np.ndarray,
    valid: np.ndarray,
    water_mask: np.ndarray | None,
    pixel_size_m: float,
    params: CfarParams | None = None,
    margin: int = 0,
) -> list[dict[str, Any]]:
    """Bright point targets of one chip as facts "detections" items, ordered by (y1, x1).

    db_band / valid: the (H + 2 margin, W + 2 margin) context of the chip (NaN / False beyond the scene);
    margin 0 is the chip alone (targets cut by its border are then described as cut), otherwise it
    must be at least params.margin. water_mask: (H, W) of the chip. Boxes are [x1, y1, x2, y2] in chip
    pixels (x2, y2 exclusive), clipped to the chip; peak_px is the [x, y] chip pixel of the peak; area_px
    and length_m describe the whole component; on_water says whether the clipped box's centre pixel is
    in `water_mask` (False without one).
    """
    params = params or CfarParams()
    if db_band.ndim != 2 or db_band.shape != valid.shape:
        raise ValueError(f"detect: db_band and valid must both be (H, W); got {db_band.shape}, {valid.shape}")
    if margin and margin < params.margin:
        raise ValueError(
            f"detect: margin {margin} px is smaller than the {params.margin} px CfarParams needs"
        )
    h, w = db_band.shape[0] - 2 * margin, db_band.shape[1] - 2 * margin
    if h < 1 or w < 1:
        raise ValueError(f"detect: a {db_band.shape} context has no chip inside a {margin} px margin")
    if water_mask is not None and water_mask.shape != (h, w):
        raise ValueError(f"detect: water_mask is {water_mask.shape}, expected {(h, w)}")
    if params.water_only and water_mask is None:
        raise ValueError("detect: water_only=True needs a water mask; compute it with surface.water_mask")
    if not pixel_size_m > 0:
        raise ValueError(f"detect: pixel_size_m must be > 0, got {pixel_size_m}")
    hit = detection_mask(db_band, valid, params)
    edge = None
    if margin:
        dist = _chebyshev_to_chip(hit.shape, margin)
        hit &= dist <= params.max_extent_px
        edge = dist == params.max_extent_px  # a component reaching here may go on beyond the context
    labels, n = ndimage.label(hit, structure=np.ones((3, 3), dtype=bool))
    items: list[dict[str, Any]] = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == lab  # (h_box, w_box)
        values = np.where(comp, db_band[sl], -np.inf)
        py, px = np.unravel_index(int(np.argmax(values)), values.shape)  # first maximum, row-major
        py, px = int(py) + sl[0].start - margin, int(px) + sl[1].start - margin  # chip pixels
        if not (0 <= py < h and 0 <= px < w):
            continue  # the target belongs to the chip that holds its peak
        area = int(comp.sum())
        bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if area < params.min_area_px or area > params.max_area_px or max(bh, bw) > params.max_extent_px:
            continue
        if edge is not None and bool(edge[sl][comp].any()):
            continue  # may be cut by the context: longer than max_extent_px, dropped in every chip
        y1, y2 = max(sl[0].start - margin, 0), min(sl[0].stop - margin, h)
        x1, x2 = max(sl[1].start - margin, 0), min(sl[1].stop - margin, w)
        xc, yc = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        on_water = (
            bool(water_mask[min(int(yc), h - 1), min(int(xc), w - 1)]) if water_mask is not None else False
        )
        if params.water_only and not on_water:
            continue
        measurable = max(bh, bw) >= MIN_MEASURABLE_PX
        items.append(
            {
                "bbox": [x1, y1, x2, y2],
                "cell": cell_of(xc, yc, w, h),
                "peak_px": [px, py],
                "peak_db": round(float(values.max()), 2),
                "area_px": area,
                "length_m": round(math.hypot(bw, bh) * pixel_size_m, 1) if measurable else None,
                "on_water": on_water,
            }
        )
    items.sort(key=lambda d: (d["bbox"][1], d["bbox"][0]))
    logger.debug("CFAR: %d components, %d kept", n, len(items))
    return items


def detector_info(params: CfarParams | None = None) -> dict[str, Any]:
    """The facts "detections.detector" description of the detector and its settings."""
    params = params or CfarParams()
    return {
        "name": "CA-CFAR",
        "clutter_model": "exponential",
        "connectivity": 8,
        "length_method": LENGTH_METHOD,
        "min_measurable_px": MIN_MEASURABLE_PX,
        "assignment": "peak",
        **asdict(params),
    }
