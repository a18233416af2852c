"""Water / bright thresholds by convention and polarisation, the dual-pol water rule, and the scene-level
Otsu split."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from tests.conftest import port_scene
from triplet_builder.config import FactsConfig
from triplet_builder.facts.surface import water_mask
from triplet_builder.facts.thresholds import otsu_threshold, resolve
from triplet_builder.record import Backscatter, ChipRecord, Window
from triplet_builder.stages.base import Stats
from triplet_builder.stages.facts import Facts
from triplet_builder.stages.tile import ReadChips


@pytest.mark.parametrize(
    ("convention", "pols", "water", "cross", "bright", "source"),
    [
        ("sigma0", ("VV",), -18.0, None, 0.0, "table:sigma0/co-pol"),
        ("gamma0", ("VV",), -17.0, None, 1.0, "table:gamma0/co-pol"),
        ("beta0", ("HH",), -16.0, None, 2.0, "table:beta0/co-pol"),
        ("sigma0", ("VH",), -24.0, None, -7.0, "table:sigma0/cross-pol"),
        ("gamma0", ("HV",), -23.0, None, -6.0, "table:gamma0/cross-pol"),
        ("gamma0", ("VV", "VH"), -17.0, -23.0, 1.0, "table:gamma0/co-pol"),
        ("sigma0", ("HH", "HV"), -18.0, -24.0, 0.0, "table:sigma0/co-pol"),
        # unknown: the entry that claims least, lowest water and highest bright of the pol class
        ("unknown", ("VV",), -18.0, None, 2.0, "table:unknown/co-pol (most conservative)"),
        ("unknown", ("VH",), -24.0, None, -5.0, "table:unknown/cross-pol (most conservative)"),
    ],
)
def test_table_by_convention_and_polarisation(
    convention: str, pols: tuple[str, ...], water: float, cross: float | None, bright: float, source: str
) -> None:
    t = resolve(convention, pols, 0, None, None)
    assert (t.water_db, t.water_cross_db, t.bright_db) == (water, cross, bright)
    assert t.water_source == source and t.bright_source == source


def test_configured_numbers_win() -> None:
    t = resolve("gamma0", ("VV", "VH"), 0, -20.0, 3.0)
    assert (t.water_db, t.water_cross_db, t.bright_db) == (-20.0, None, 3.0)
    assert (t.water_source, t.bright_source) == ("config", "config")


def test_dual_pol_rule_needs_both_bands_dark() -> None:
    """Recomputed independently: scipy's 3 x 3 median (reflected borders) of each band below its
    threshold, AND-ed. A block dark only in VV (tarmac-like) and a block dark only in VH are not water."""
    rng = np.random.default_rng(3)
    vv = rng.normal(-8.0, 1.0, (30, 30)).astype(np.float32)
    vh = rng.normal(-15.0, 1.0, (30, 30)).astype(np.float32)
    vv[0:12, 0:12] -= 16.0  # water: dark in both
    vh[0:12, 0:12] -= 14.0
    vv[15:27, 0:12] -= 16.0  # dark in co-pol only
    vh[0:12, 15:27] -= 14.0  # dark in cross-pol only
    db = np.stack([vv, vh])
    valid = np.ones((30, 30), dtype=bool)
    mask, thr = water_mask(db, valid, ("VV", "VH"), -18.0, -24.0)
    expect = (ndimage.median_filter(vv, size=3, mode="reflect") < -18.0) & (
        ndimage.median_filter(vh, size=3, mode="reflect") < -24.0
    )
    assert thr == -18.0 and mask.sum() > 100
    np.testing.assert_array_equal(mask, expect)
    assert not mask[15:27, 0:12].any() and not mask[0:12, 15:27].any()
    co_only, _ = water_mask(db, valid, ("VV", "VH"), -18.0)  # no cross threshold: VV alone decides
    assert co_only[16:26, 1:11].all()


def _brute_force_otsu_partition(v: np.ndarray) -> float:
    """The split of the sorted values maximising w0 * w1 * (m0 - m1)^2, tried at every gap."""
    s = np.sort(v)
    best, cut = -1.0, s[0]
    for k in range(1, s.size):
        if s[k] == s[k - 1]:
            continue
        a, b = s[:k], s[k:]
        score = a.size * b.size * (a.mean() - b.mean()) ** 2
        if score > best:
            best, cut = score, s[k]
    return float(cut)  # the lowest value of the upper class


def test_otsu_on_a_hand_computed_case() -> None:
    """{1, 2, 3} vs {7, 8, 9}: every split at 4..7 has the same classes; the threshold separates them."""
    v = np.array([1, 2, 3, 7, 8, 9], dtype=np.float64)
    t = otsu_threshold(v)
    assert 3 < t <= 7
    assert set(v[v < t]) == {1, 2, 3}


def test_otsu_on_a_synthetic_bimodal_scene_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(-22, 1.5, 3000), rng.normal(-9, 2.5, 7000)])
    t = otsu_threshold(v)
    assert -18.0 < t < -13.0
    cut = _brute_force_otsu_partition(v)
    # the same partition up to the histogram's bin width
    assert abs(t - cut) <= (v.max() - v.min()) / 256 + 1e-9


def test_otsu_threshold_is_the_scenes_not_the_chips() -> None:
    """With facts.water_threshold_db: otsu every chip of a scene gets the split of the WHOLE scene's dB
    histogram (recomputed here from the file), with its origin recorded."""
    scene = dataclasses.replace(port_scene(), backscatter=Backscatter.GAMMA0)
    stage = Facts(FactsConfig(water_threshold_db="otsu"))
    t = stage.thresholds(scene)
    with rasterio.open(scene.bands[0].uri) as ds:
        band = ds.read(1, masked=True).filled(np.nan)
    expect = round(otsu_threshold(band[np.isfinite(band)]), 2)
    assert t.water_source == "otsu:scene" and t.water_db == expect
    assert t.bright_source == "table:gamma0/co-pol"
    # a chip's own histogram gives another split; the scene's is used for all chips
    windows = [Window(c, r, 64, 64, 64, 64) for c, r in itertools.product((0, 128), (0, 128))]
    recs = list(
        ReadChips(max_nodata_fraction=1.0).run(
            [ChipRecord(str(i), scene, w) for i, w in enumerate(windows)], Stats()
        )
    )
    own = {
        round(otsu_threshold(r.db[0][r.valid]), 2) for r in recs if r.db is not None and r.valid is not None
    }
    assert own != {expect}
    assert {stage.thresholds(r.scene).water_db for r in recs} == {expect}


def test_otsu_without_a_scene_file_falls_back_to_the_table_and_says_so() -> None:
    scene = dataclasses.replace(port_scene(), backscatter=Backscatter.GAMMA0)
    ee_band = dataclasses.replace(scene.bands[0], uri="ee://COPERNICUS/S1_GRD/X")
    t = Facts(FactsConfig(water_threshold_db="otsu")).thresholds(dataclasses.replace(scene, bands=(ee_band,)))
    assert t.water_db == -17.0 and t.water_source == "table:gamma0/co-pol (otsu: no scene sample)"
