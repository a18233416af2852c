"""CA-CFAR: the threshold map against a per-pixel reference loop, injected targets on exponential
speckle, the false-alarm rate, invalid pixels, exact boxes, and a real port scene."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from triplet_builder.facts.cfar import (
    CfarParams,
    alpha_for,
    detect,
    detection_mask,
    detector_info,
    threshold_map,
)

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"


def _speckle_db(shape: tuple[int, int], mean_power: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (10.0 * np.log10(rng.exponential(mean_power, size=shape))).astype(np.float32)


def _reference_threshold(db: np.ndarray, valid: np.ndarray, p: CfarParams) -> np.ndarray:
    """Per-pixel loop over the training ring, in plain Python/numpy."""
    h, w = db.shape
    power = np.where(valid, 10.0 ** (np.where(valid, db, 0.0).astype(np.float64) / 10.0), 0.0)
    r_out = p.guard + p.train
    out = np.full((h, w), np.inf)
    for i in range(h):
        for j in range(w):
            total, n = 0.0, 0
            for di in range(-r_out, r_out + 1):
                for dj in range(-r_out, r_out + 1):
                    if max(abs(di), abs(dj)) <= p.guard:
                        continue
                    y, x = i + di, j + dj
                    if 0 <= y < h and 0 <= x < w and valid[y, x]:
                        total += power[y, x]
                        n += 1
            if n >= p.min_train_fraction * p.n_train and n > 0:
                out[i, j] = n * (p.pfa ** (-1.0 / n) - 1.0) * total / n
    return out


def test_threshold_map_matches_reference_loop() -> None:
    p = CfarParams(pfa=1e-4, guard=1, train=3)
    db = _speckle_db((48, 48), 0.01, seed=1)
    valid = np.ones(db.shape, dtype=bool)
    valid[30:40, 5:20] = False  # a nodata patch
    db[~valid] = np.nan
    db[10, 10] = 15.0  # a target inside other pixels' rings
    thr, _, n = threshold_map(db, valid, p)
    ref = _reference_threshold(db, valid, p)
    assert np.array_equal(np.isinf(thr), np.isinf(ref))
    fin = np.isfinite(ref)
    assert fin.sum() > 1500
    np.testing.assert_allclose(thr[fin], ref[fin], rtol=1e-5)
    assert n[24, 24] == p.n_train and n[0, 0] == (p.guard + p.train + 1) ** 2 - (p.guard + 1) ** 2


def test_alpha_gives_the_pfa_for_exponential_clutter() -> None:
    n = 320
    a = float(alpha_for(1e-6, n))
    assert (1.0 + a / n) ** (-n) == pytest.approx(1e-6, rel=1e-9)


def test_false_alarm_rate_on_speckle() -> None:
    p = CfarParams(pfa=1e-3, guard=2, train=8, min_db=None)
    db = _speckle_db((400, 400), 0.02, seed=7)
    hit = detection_mask(db, np.ones(db.shape, dtype=bool), p)
    inner = hit[10:-10, 10:-10]
    rate = inner.mean()
    assert 0.7e-3 < rate < 1.3e-3
    # the absolute floor removes all of them (clutter is around -17 dB)
    assert not detection_mask(db, np.ones(db.shape, dtype=bool), CfarParams(pfa=1e-3)).any()


def test_injected_targets_are_found_with_exact_boxes() -> None:
    db = _speckle_db((96, 96), 0.01, seed=3)  # about -20 dB sea
    valid = np.ones(db.shape, dtype=bool)
    points = [(12, 70), (50, 15), (80, 80)]
    for y, x in points:
        db[y, x] = 10.0
    db[40:42, 60:63] = 8.0  # a 2 x 3 block target
    db[40, 61] = 12.0
    # bright values in an invalid region (and NaN beside them) must never be detections
    valid[70:80, 20:30] = False
    db[70:80, 20:30] = 30.0
    db[70:80, 30:32] = np.nan
    valid[70:80, 30:32] = False
    water = np.ones(db.shape, dtype=bool)
    water[:, 48:] = False
    items = detect(db, valid, water, pixel_size_m=10.0, params=CfarParams(pfa=1e-6, min_db=0.0))
    boxes = [d["bbox"] for d in items]
    block = next(d for d in items if d["bbox"] == [60, 40, 63, 42])
    assert block["area_px"] == 6 and block["peak_db"] == 12.0
    assert block["length_m"] == pytest.approx(round(math.hypot(3, 2) * 10.0, 1))
    assert block["cell"] == 5 and block["on_water"] is False  # centre (61.5, 41) of a 96 x 96 chip
    for y, x in points:
        assert [x, y, x + 1, y + 1] in boxes
    assert len(items) == 4  # no false alarms
    single = next(d for d in items if d["bbox"] == [15, 50, 16, 51])
    assert single["on_water"] is True and single["cell"] == 4 and single["area_px"] == 1
    assert items == sorted(items, key=lambda d: (d["bbox"][1], d["bbox"][0]))
    assert all(not (70 <= d["bbox"][1] < 80 and 20 <= d["bbox"][0] < 32) for d in items)
    # water_only keeps the target in the water half only
    wo = detect(db, valid, water, 10.0, CfarParams(water_only=True))
    assert [d["bbox"] for d in wo] == [[15, 50, 16, 51]]
    # area limits
    big_only = detect(db, valid, water, 10.0, CfarParams(min_area_px=2))
    assert [d["bbox"] for d in big_only] == [[60, 40, 63, 42]]


def test_invalid_neighbourhood_never_counts() -> None:
    db = _speckle_db((48, 48), 0.01, seed=5)
    valid = np.ones(db.shape, dtype=bool)
    db[:, 24:] = np.nan  # half the chip invalid: NaN must not poison the clutter mean
    valid[:, 24:] = False
    db[20, 22] = 10.0
    items = detect(db, valid, None, 10.0)
    assert [d["bbox"] for d in items] == [[22, 20, 23, 21]]
    assert items[0]["on_water"] is False


def test_parameter_errors() -> None:
    with pytest.raises(ValueError, match="pfa"):
        CfarParams(pfa=0.0)
    with pytest.raises(ValueError, match="min_area_px"):
        CfarParams(min_area_px=5, max_area_px=2)
    db = np.zeros((8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="water mask"):
        detect(db, np.ones((8, 8), dtype=bool), None, 10.0, CfarParams(water_only=True))
    info = detector_info()
    assert info["name"] == "CA-CFAR" and info["length_method"] == "bbox_diagonal" and info["pfa"] == 1e-6


def test_real_port_scene() -> None:
    with rasterio.open(PORT) as ds:
        raw = ds.read(1)
        px = float(ds.res[0])
    valid = raw != -99.0
    db = np.where(valid, raw, np.nan).astype(np.float32)
    h, w = db.shape
    items = detect(db, valid, np.zeros_like(valid), px)
    assert 0 < len(items) < 200
    for d in items:
        x1, y1, x2, y2 = d["bbox"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 1 <= d["cell"] <= 9
        assert d["peak_db"] >= 0.0 and d["length_m"] > 0
        assert d["peak_db"] == pytest.approx(float(np.nanmax(db[y1:y2, x1:x2])), abs=0.01)
    assert items == sorted(items, key=lambda d: (d["bbox"][1], d["bbox"][0]))


@pytest.mark.parametrize("seed", range(4))
def test_the_floor_fast_path_equals_the_dense_mask(seed: int) -> None:
    """detection_mask with a floor (summed-area tables at the bright pixels only) gives the mask of the
    box-filter threshold map restricted to the floor, on speckled chips with targets, edges and nodata."""
    from triplet_builder.facts.cfar import _detection_mask_dense, detection_mask

    rng = np.random.default_rng(seed)
    db = (10 * np.log10(rng.exponential(0.1, (96, 80)))).astype(np.float32)
    db[rng.random(db.shape) < 0.01] = 12.0  # bright targets
    db[:3, :] = 15.0  # a bright edge band
    valid = rng.random(db.shape) > 0.05
    db[~valid] = np.nan
    params = CfarParams(pfa=1e-4, min_db=-3.0)
    fast = detection_mask(db, valid, params)
    dense = _detection_mask_dense(db, valid, params)
    assert fast.any()
    np.testing.assert_array_equal(fast, dense)
