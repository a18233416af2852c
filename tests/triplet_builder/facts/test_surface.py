"""Surface facts: water by median-filtered threshold, fractions over valid pixels, the 3 x 3 cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from triplet_builder.facts.surface import (
    cell_index_map,
    cell_of,
    default_water_threshold,
    reference_band,
    surface_facts,
    water_mask,
)

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"


def test_water_equals_scipy_median_filter_on_valid_data() -> None:
    rng = np.random.default_rng(0)
    band = rng.normal(-18.0, 4.0, size=(61, 53)).astype(np.float32)
    valid = np.ones(band.shape, dtype=bool)
    water, thr = water_mask(band[None], valid, ("VV",))
    assert thr == -18.0
    expected = ndimage.median_filter(band, size=3, mode="reflect") < -18.0
    np.testing.assert_array_equal(water, expected)


def test_water_is_a_strict_majority_of_the_valid_pixels_of_each_window() -> None:
    """With nodata holes, recomputed pixel by pixel: a valid pixel is water when more than half of the valid
    pixels of its 3 x 3 window (borders mirrored, scipy's "reflect" = numpy's "symmetric") are below the
    threshold; a tie (as many dark as not, an even valid count) is not water."""
    rng = np.random.default_rng(3)
    band = rng.normal(-18.0, 4.0, size=(37, 41)).astype(np.float32)
    valid = rng.random(band.shape) > 0.3
    band[~valid] = np.nan
    water, _ = water_mask(band[None], valid, ("VV",))
    pb, pv = np.pad(band, 1, mode="symmetric"), np.pad(valid, 1, mode="symmetric")
    expected = np.zeros(band.shape, dtype=bool)
    ties = 0
    for r in range(band.shape[0]):
        for c in range(band.shape[1]):
            vals = pb[r : r + 3, c : c + 3][pv[r : r + 3, c : c + 3]]
            dark = int((vals < -18.0).sum())
            ties += valid[r, c] and 2 * dark == vals.size
            expected[r, c] = valid[r, c] and 2 * dark > vals.size
    assert ties > 20  # the case that tells "more than half" from "at least half" occurs
    np.testing.assert_array_equal(water, expected)


def test_median_suppresses_speckle_and_ignores_invalid() -> None:
    band = np.full((30, 30), -8.0, dtype=np.float32)  # land
    band[:, :15] = -25.0  # water on the left
    band[10, 22] = -30.0  # one dark speckle pixel on land
    band[20, 5] = 5.0  # one bright pixel in water (a small boat)
    valid = np.ones(band.shape, dtype=bool)
    valid[:, 28:] = False
    band[:, 28:] = np.nan
    water, _ = water_mask(band[None], valid, ("VV",))
    assert not water[10, 22]
    assert water[20, 5]
    assert water[:, :14].all() and not water[:, 16:].any()
    assert not water[~valid].any()


def test_fractions_over_valid_pixels() -> None:
    h, w = 40, 60
    band = np.full((h, w), -10.0, dtype=np.float32)
    band[:, :20] = -25.0  # water: 20 of 60 columns
    band[5:7, 40:45] = 3.0  # 10 bright pixels
    valid = np.ones((h, w), dtype=bool)
    valid[20:, :] = False  # the bottom half is nodata
    band[~valid] = np.nan
    s = surface_facts(band[None], valid, ("VV",))
    assert s["valid_fraction"] == 0.5
    assert s["water_fraction"] == pytest.approx(round(20 / 60, 3))
    assert s["land_fraction"] == pytest.approx(round(40 / 60, 3))
    assert s["bright_fraction"] == pytest.approx(round(10 / (20 * 60), 3))
    assert s["water_threshold_db"] == -18.0 and s["bright_threshold_db"] == 0.0
    vals = band[valid]
    assert s["mean_db"] == pytest.approx(round(float(vals.mean()), 2))
    assert s["std_db"] == pytest.approx(round(float(vals.std()), 2))
    cells = {c["cell"]: c for c in s["cells"]}
    assert [c["cell"] for c in s["cells"]] == list(range(1, 10))
    assert cells[1]["water_fraction"] == 1.0 and cells[2]["water_fraction"] == 0.0
    assert cells[7]["valid_fraction"] == 0.0 and cells[7]["water_fraction"] == 0.0  # never divides by zero
    # cut at 40 / 3 and 80 / 3 rows by pixel centre: rows 0..12 are cell row 1, 13..26 row 2
    # (valid 13..19 -> 7 of 14 rows)
    assert cells[4]["valid_fraction"] == pytest.approx(round(7 / 14, 3))
    assert cells[3]["bright_fraction"] == pytest.approx(round(10 / (13 * 20), 3))


def test_empty_valid_mask() -> None:
    band = np.full((1, 9, 9), np.nan, dtype=np.float32)
    s = surface_facts(band, np.zeros((9, 9), dtype=bool), ("VV",))
    assert s["valid_fraction"] == 0.0 and s["water_fraction"] == 0.0 and s["land_fraction"] == 0.0
    assert s["mean_db"] == 0.0 and s["std_db"] == 0.0
    assert all(c["valid_fraction"] == 0.0 for c in s["cells"])


def test_polarisation_choice() -> None:
    assert reference_band(("VH", "VV")) == 1
    assert reference_band(("HV", "HH")) == 1
    assert reference_band(("VH",)) == 0
    assert default_water_threshold(("VH",)) == -24.0
    assert default_water_threshold(("HV", "VH")) == -24.0
    assert default_water_threshold(("VV", "VH")) == -18.0
    assert default_water_threshold(("UNKNOWN",)) == -18.0
    # VH-only data is judged with -24 dB: -26 dB is water, -20 dB is not (it would be with -18 dB)
    db = np.full((2, 12, 12), -26.0, dtype=np.float32)
    db[1] = -12.0  # VV is land-bright: with both bands, the co-pol band decides
    valid = np.ones((12, 12), dtype=bool)
    assert surface_facts(db[:1], valid, ("VH",))["water_fraction"] == 1.0
    assert surface_facts(db[:1] + 6.0, valid, ("VH",))["water_fraction"] == 0.0
    assert surface_facts(db, valid, ("VH", "VV"))["water_fraction"] == 0.0
    assert surface_facts(db[:1], valid, ("VH",), water_threshold_db=-27.0)["water_fraction"] == 0.0
    with pytest.raises(ValueError, match="polarisations"):
        surface_facts(db, valid, ("VV",))


@pytest.mark.parametrize(("h", "w"), [(9, 9), (10, 11), (64, 64), (50, 47), (4, 5)])
def test_every_pixel_in_exactly_one_cell(h: int, w: int) -> None:
    cmap = cell_index_map(h, w)
    counts = np.bincount(cmap.ravel(), minlength=10)[1:]
    assert counts.sum() == h * w and (counts > 0).all()
    # independently: a pixel is in the band of its centre's normalized position, cut at 1/3 and 2/3
    for y in range(h):
        for x in range(w):
            row = 0 if (y + 0.5) / h < 1 / 3 else (1 if (y + 0.5) / h < 2 / 3 else 2)
            col = 0 if (x + 0.5) / w < 1 / 3 else (1 if (x + 0.5) / w < 2 / 3 else 2)
            assert cmap[y, x] == 3 * row + col + 1
            assert cell_of(x + 0.5, y + 0.5, w, h) == cmap[y, x]  # cell_of agrees at pixel centres
    assert cell_of(0.0, 0.0, w, h) == 1 and cell_of(w, h, w, h) == 9
    # centre of the box [20, 5, 22, 7] of a 64 px chip: 21.0 < 64 / 3, cell 1 at any size (the old
    # integer edge at 21 px put it in cell 2, and in cell 1 after the trainer's resize to 504 px)
    assert cell_of(21.0, 6.0, 64, 64) == 1


def test_real_port_scene() -> None:
    with rasterio.open(PORT) as ds:
        raw = ds.read(1)
        nodata = ds.nodata
    valid = raw != nodata
    db = np.where(valid, raw, np.nan).astype(np.float32)[None]
    s = surface_facts(db, valid, ("VV",))
    assert s["valid_fraction"] == 1.0
    assert 0.05 < s["water_fraction"] < 0.6  # river channel, port basin and sea
    assert s["water_fraction"] + s["land_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert 0.0 < s["bright_fraction"] < 0.05  # built-up area and ships
    assert -20.0 < s["mean_db"] < -8.0 and s["std_db"] > 1.0
    assert all(0.0 <= c["water_fraction"] <= 1.0 for c in s["cells"])
