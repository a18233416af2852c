"""CA-CFAR: the threshold map against a per-pixel reference loop, injected targets on exponential
speckle, the false-alarm rate, invalid pixels, exact boxes, and a real port scene."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from schemas.codec import db_to_linear_power
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
    assert info["min_measurable_px"] == 3 and info["assignment"] == "peak"
    with pytest.raises(ValueError, match="margin 5 px is smaller"):
        detect(np.zeros((20, 20), np.float32), np.ones((20, 20), bool), None, 10.0, CfarParams(), margin=5)


def test_real_port_scene() -> None:
    with rasterio.open(PORT) as ds:
        raw = ds.read(1)
        px = float(ds.res[0])
    valid = raw != -99.0
    db = np.where(valid, raw, np.nan).astype(np.float32)
    h, w = db.shape
    items = detect(db, valid, np.zeros_like(valid), px)
    assert 0 < len(items) < 200
    assert any(d["length_m"] is not None for d in items)  # the length check below is not vacuous
    for d in items:
        x1, y1, x2, y2 = d["bbox"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 1 <= d["cell"] <= 9
        assert d["peak_db"] >= 0.0
        side = max(x2 - x1, y2 - y1)  # a box inside the scene is never clipped: its sides are the target's
        assert (d["length_m"] is None) == (side < 3)
        if d["length_m"] is not None:
            assert d["length_m"] == pytest.approx(math.hypot(x2 - x1, y2 - y1) * px, abs=0.06)
        assert d["peak_db"] == pytest.approx(float(np.nanmax(db[y1:y2, x1:x2])), abs=0.01)
    assert items == sorted(items, key=lambda d: (d["bbox"][1], d["bbox"][0]))


@pytest.mark.parametrize("ring", ["windows", "tables"])
@pytest.mark.parametrize("seed", range(4))
def test_the_floor_fast_path_equals_the_dense_mask(
    seed: int, ring: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """detection_mask with a floor (ring sums at the bright pixels only, from their own windows or from
    summed-area tables) gives the mask of the box-filter threshold map restricted to the floor, on
    speckled chips with targets, edges and nodata."""
    from triplet_builder.facts import cfar
    from triplet_builder.facts.cfar import _detection_mask_dense, detection_mask

    monkeypatch.setattr(cfar, "GATHER_MAX_RATIO", math.inf if ring == "windows" else 0.0)
    used = {"windows": 0, "tables": 0}
    for name, key in (("_ring_stats", "windows"), ("_ring_stats_tables", "tables")):
        real = getattr(cfar, name)

        def counted(*a: object, _real: object = real, _key: str = key) -> object:
            used[_key] += 1
            return _real(*a)  # type: ignore[operator]

        monkeypatch.setattr(cfar, name, counted)
    rng = np.random.default_rng(seed)
    db = (10 * np.log10(rng.exponential(0.1, (96, 80)))).astype(np.float32)
    db[rng.random(db.shape) < 0.01] = 12.0  # bright targets
    db[:3, :] = 15.0  # a bright edge band
    valid = rng.random(db.shape) > 0.05
    db[~valid] = np.nan
    params = CfarParams(pfa=1e-4, min_db=-3.0)
    fast = detection_mask(db, valid, params)
    dense = _detection_mask_dense(db, valid, params)
    assert fast.any() and used[ring] == 1 and sum(used.values()) == 1
    np.testing.assert_array_equal(fast, dense)


def test_the_two_ring_sums_agree_at_edges_and_nodata() -> None:
    """The window-by-window ring sums and the summed-area-table ones: the same valid counts exactly and
    the same power sums to float rounding, at every pixel of a chip with nodata, edges included."""
    from triplet_builder.facts.cfar import _ring_stats, _ring_stats_tables

    rng = np.random.default_rng(5)
    db = (10 * np.log10(rng.exponential(0.1, (50, 37)))).astype(np.float32)
    ok = rng.random(db.shape) > 0.1
    db[~ok] = np.nan
    ys, xs = np.nonzero(np.ones(db.shape, dtype=bool))
    p = CfarParams(guard=1, train=5)
    a, b = _ring_stats(db, ok, ys, xs, p), _ring_stats_tables(db, ok, ys, xs, p)
    np.testing.assert_array_equal(a[0], b[0])  # the pixel's own power
    np.testing.assert_allclose(a[1], b[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a[2], b[2])
    assert a[2].min() < p.n_train / 3 < 0.85 * p.n_train < a[2].max()  # corners and the interior


def test_fast_and_dense_paths_use_the_valid_training_count_at_chip_edges() -> None:
    """At a chip edge (and next to nodata) the ring holds fewer valid cells than the nominal count,
    which raises the CFAR factor alpha. Targets whose power / clutter ratio lies between alpha(nominal)
    and alpha(valid) are NOT detections; a path using the nominal count would call them targets."""
    from triplet_builder.facts.cfar import _detection_mask_dense

    p = CfarParams(pfa=1e-3, guard=2, train=4, min_db=-100.0)  # floor below everything: fast path
    h, w = 40, 48
    db = np.zeros((h, w), dtype=np.float32)  # flat clutter at 0 dB: power 1 everywhere
    valid = np.ones((h, w), dtype=bool)
    valid[20:26, 30:36] = False  # a nodata patch: rings of the pixels around it lose cells too
    db[~valid] = np.nan
    # edge pixels (row 0 and column 0) and one beside the nodata patch, farther apart than a ring
    targets = [(0, 12), (0, 30), (1, 40), (14, 0), (30, 1), (22, 28)]
    flat = _reference_threshold(db, valid, p)  # flat clutter: the threshold is alpha(valid count)
    alphas = []
    for y, x in targets:
        ref_thr = flat[y, x]
        assert math.isfinite(ref_thr)
        nominal = float(alpha_for(p.pfa, p.n_train))
        assert ref_thr > nominal * 1.005, (y, x)  # the ring is short of valid cells here
        ratio = math.sqrt(ref_thr * nominal)  # between the two factors
        db[y, x] = 10.0 * math.log10(ratio)
        alphas.append((ref_thr, nominal, ratio))
    ref = _reference_threshold(db, valid, p)
    power = np.where(valid, 10.0 ** (np.nan_to_num(db, nan=-np.inf).astype(np.float64) / 10.0), 0.0)
    expected = valid & (power > ref)  # the reference answer, pixel by pixel
    assert not expected[tuple(np.array(targets).T)].any(), alphas
    fast = detection_mask(db, valid, p)
    dense = _detection_mask_dense(db, valid, p)
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(dense, expected)


def test_a_size_is_stated_only_when_the_target_spans_three_pixels() -> None:
    db = _speckle_db((64, 64), 0.01, seed=11)
    valid = np.ones(db.shape, dtype=bool)
    db[10, 10] = 12.0  # one pixel
    db[30:32, 30:32] = 12.0  # 2 x 2
    db[50, 40:43] = 12.0  # 1 x 3: measurable along x
    db[20:24, 52] = 12.0  # 4 x 1: measurable along y
    items = {tuple(d["bbox"]): d for d in detect(db, valid, None, 20.0)}
    assert set(items) == {(10, 10, 11, 11), (30, 30, 32, 32), (40, 50, 43, 51), (52, 20, 53, 24)}
    assert items[(10, 10, 11, 11)]["length_m"] is None  # a point target of unknown size, not "28 m long"
    assert items[(30, 30, 32, 32)]["length_m"] is None
    assert items[(40, 50, 43, 51)]["length_m"] == round(math.hypot(3, 1) * 20.0, 1)
    assert items[(52, 20, 53, 24)]["length_m"] == round(math.hypot(1, 4) * 20.0, 1)
    assert items[(10, 10, 11, 11)]["peak_px"] == [10, 10]


def _context(scene: np.ndarray, valid: np.ndarray, x0: int, y0: int, size: int, m: int):  # type: ignore[no-untyped-def]
    """The chip at (x0, y0) with m context pixels, NaN / invalid beyond the scene (the tile stage's job)."""
    h, w = scene.shape
    db = np.full((size + 2 * m, size + 2 * m), np.nan, dtype=np.float32)
    ok = np.zeros(db.shape, dtype=bool)
    ys, xs = slice(max(y0 - m, 0), min(y0 + size + m, h)), slice(max(x0 - m, 0), min(x0 + size + m, w))
    oy, ox = ys.start - (y0 - m), xs.start - (x0 - m)
    db[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = scene[ys, xs]
    ok[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = valid[ys, xs]
    return db, ok


def test_overlapping_chips_report_the_same_targets_as_the_whole_scene() -> None:
    """Targets placed across chip borders: every chip (with its context) reports exactly the targets of
    a detection over the whole scene whose peak lies inside it, with the same peak (scene pixels), area
    and length; its boxes are the scene boxes clipped to the chip."""
    params = CfarParams(pfa=1e-6, min_db=0.0, max_extent_px=12)
    scene = _speckle_db((160, 160), 0.01, seed=21)
    valid = np.ones(scene.shape, dtype=bool)
    scene[31:33, 30:34] = 10.0  # straddles the border at 32 (rows and columns)
    scene[32, 33] = 14.0
    scene[63, 64] = 12.0  # one pixel beside a border
    scene[60:70, 95:97] = 9.0  # a 10 px long target across the border at 64 / 96
    scene[66, 96] = 13.0
    scene[100, 2] = 11.0  # near the scene edge
    scene[140:143, 10:12] = 9.0
    valid[150:, :40] = False  # nodata
    scene[~valid] = np.nan
    whole = {tuple(d["peak_px"]): d for d in detect(scene, valid, None, 20.0, params)}
    assert sorted(whole) == [(2, 100), (10, 140), (33, 32), (64, 63), (96, 66)]
    size, m = 64, params.margin
    seen: dict[tuple[int, int], int] = {}
    for y0 in range(0, 160 - size + 1, 32):
        for x0 in range(0, 160 - size + 1, 32):
            db, ok = _context(scene, valid, x0, y0, size, m)
            got = {}
            for d in detect(db, ok, None, 20.0, params, margin=m):
                peak = (d["peak_px"][0] + x0, d["peak_px"][1] + y0)
                got[peak] = d
                seen[peak] = seen.get(peak, 0) + 1
            inside = {p for p in whole if x0 <= p[0] < x0 + size and y0 <= p[1] < y0 + size}
            assert set(got) == inside, (x0, y0)
            for p in inside:
                ref, d = whole[p], got[p]
                assert (d["area_px"], d["length_m"], d["peak_db"]) == (
                    ref["area_px"],
                    ref["length_m"],
                    ref["peak_db"],
                )
                x1, y1, x2, y2 = ref["bbox"]
                clipped = [max(x1 - x0, 0), max(y1 - y0, 0), min(x2 - x0, size), min(y2 - y0, size)]
                assert d["bbox"] == clipped
    assert set(seen) == set(whole) and max(seen.values()) == 4  # a target seen by four chips


def test_a_pixel_exactly_at_the_floor_is_a_candidate() -> None:
    """The floor is inclusive (db >= min_db): a pixel of exactly 0.0 dB over -30 dB clutter is detected."""
    db = np.full((48, 48), -30.0, dtype=np.float32)
    db[24, 24] = 0.0
    hit = detection_mask(db, np.ones(db.shape, dtype=bool), CfarParams(min_db=0.0))
    assert np.argwhere(hit).tolist() == [[24, 24]]


def test_a_pixel_equal_to_its_threshold_is_not_a_detection() -> None:
    """CA-CFAR detects power strictly above alpha * mean: on valid pixels of zero linear power (-500 dB
    underflows float32) every threshold is 0 and nothing exceeds it."""
    db = np.full((48, 48), -500.0, dtype=np.float32)
    assert float(db_to_linear_power(db).max()) == 0.0
    hit = detection_mask(db, np.ones(db.shape, dtype=bool), CfarParams(min_db=None))
    assert not hit.any()
