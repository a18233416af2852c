"""A cell-averaging CFAR detector of bright point targets (ships, platforms, corner reflectors).

Works in LINEAR power. For every pixel the clutter mean is estimated over a square training ring (the
outer window minus the guard window around the pixel) from box sums of the power and of the valid mask,
so invalid pixels and pixels outside the chip never count. For exponential (single-look speckle)
clutter with N training cells the threshold factor giving the false-alarm probability PFA is
alpha = N * (PFA ** (-1 / N) - 1); N is the number of valid training cells of each pixel. A detection
must also be brighter than an absolute floor (min_db) so that bright land clutter is not called a
target. Detections are grouped into 8-connected components and described in chip pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from triplet_builder.facts.surface import cell_of
from triplet_builder.radiometry import db_to_linear_power

logger = logging.getLogger(__name__)

LENGTH_METHOD = "bbox_diagonal"  # length_m = diagonal of the component's box x pixel size


@dataclass(frozen=True)
class CfarParams:
    """CA-CFAR settings. Windows are in chip pixels: guard and train are half-widths of rings."""

    pfa: float = 1e-6
    guard: int = 2
    train: int = 8
    min_db: float | None = 0.0  # absolute floor (co-pol default); None: no floor
    min_area_px: int = 1
    max_area_px: int = 400
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


def detection_mask(db_band: np.ndarray, valid: np.ndarray, params: CfarParams) -> np.ndarray:
    """(H, W) bool: pixels above the CFAR threshold and the absolute floor.

    With a floor (min_db), only the pixels above it can be detections, and in SAR chips they are few:
    their ring statistics come from summed-area tables at those pixels alone (the same sums as
    threshold_map's box filters), so a chip with no bright pixel costs one comparison."""
    if params.min_db is None:
        return _detection_mask_dense(db_band, valid, params)
    ok = valid & np.isfinite(db_band)
    with np.errstate(invalid="ignore"):
        cand = ok & (db_band >= params.min_db)
    hit = np.zeros(db_band.shape, dtype=bool)
    ys, xs = np.nonzero(cand)
    if ys.size == 0:
        return hit
    power = np.where(ok, db_to_linear_power(np.where(ok, db_band, 0.0)), 0.0).astype(np.float64)
    p_tab, n_tab = _summed_area(power), _summed_area(ok.astype(np.float64))
    ring_sum = _window_sums(p_tab, ys, xs, params.outer) - _window_sums(p_tab, ys, xs, params.inner)
    ring_n = np.rint(_window_sums(n_tab, ys, xs, params.outer) - _window_sums(n_tab, ys, xs, params.inner))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ring_n > 0, np.maximum(ring_sum, 0.0) / np.maximum(ring_n, 1.0), np.nan)
        thr = np.where(
            ring_n >= params.min_train_fraction * params.n_train, alpha_for(params.pfa, ring_n) * mean, np.inf
        )
        hit[ys, xs] = power[ys, xs] > thr
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


def detect(
    db_band: np.ndarray,
    valid: np.ndarray,
    water_mask: np.ndarray | None,
    pixel_size_m: float,
    params: CfarParams | None = None,
) -> list[dict[str, Any]]:
    """Bright point targets of one (H, W) dB band as facts "detections" items, ordered by (y1, x1).

    Boxes are [x1, y1, x2, y2] in chip pixels (x2, y2 exclusive); length_m is the box diagonal times
    the pixel size; on_water says whether the box centre pixel is in `water_mask` (False without one).
    """
    params = params or CfarParams()
    if db_band.ndim != 2 or db_band.shape != valid.shape:
        raise ValueError(f"detect: db_band and valid must both be (H, W); got {db_band.shape}, {valid.shape}")
    if water_mask is not None and water_mask.shape != valid.shape:
        raise ValueError(f"detect: water_mask is {water_mask.shape}, expected {valid.shape}")
    if params.water_only and water_mask is None:
        raise ValueError("detect: water_only=True needs a water mask; compute it with surface.water_mask")
    if not pixel_size_m > 0:
        raise ValueError(f"detect: pixel_size_m must be > 0, got {pixel_size_m}")
    h, w = db_band.shape
    hit = detection_mask(db_band, valid, params)
    labels, n = ndimage.label(hit, structure=np.ones((3, 3), dtype=bool))
    items: list[dict[str, Any]] = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == lab  # (h_box, w_box)
        area = int(comp.sum())
        if area < params.min_area_px or area > params.max_area_px:
            continue
        y1, y2 = int(sl[0].start), int(sl[0].stop)
        x1, x2 = int(sl[1].start), int(sl[1].stop)
        xc, yc = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        on_water = (
            bool(water_mask[min(int(yc), h - 1), min(int(xc), w - 1)]) if water_mask is not None else False
        )
        if params.water_only and not on_water:
            continue
        items.append(
            {
                "bbox": [x1, y1, x2, y2],
                "cell": cell_of(xc, yc, w, h),
                "peak_db": round(float(np.max(db_band[sl][comp])), 2),
                "area_px": area,
                "length_m": round(math.hypot(x2 - x1, y2 - y1) * pixel_size_m, 1),
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
        **asdict(params),
    }
