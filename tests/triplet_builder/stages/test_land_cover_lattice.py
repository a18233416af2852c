"""The `land_cover` stage on chips large enough for its projected lattice (triplet_builder/sources/
map_pixels.py): sections recomputed independently, as in test_land_cover.py (chip centres from the scene
affine, pyproj to lon/lat, rasterio's index into the map), from a local map file and a local tile folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.vocabulary import WORLDCOVER_LEGEND
from tests.triplet_builder.sources.worldcover_fixtures import reference_values, write_grid, write_tile
from tests.triplet_builder.stages.test_land_cover import (
    TO_LL,
    _expected,
    _records,
    _region,
    _scene,
    _utm_centres,
)
from triplet_builder.record import Window
from triplet_builder.stages import land_cover as lc
from triplet_builder.stages.base import StageStats

WINDOWS = [
    Window(0, 0, 64, 64, 64, 64),
    Window(70, 30, 90, 60, 60, 40),  # resampled 3:2 onto its own 60 x 40 grid
    Window(150, 120, 60, 60, 40, 40),  # past the map's east edge (and 6 E): partly no data
]


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_large_chips_match_independent_fractions(tmp_path: Path, layout: str) -> None:
    tile = write_tile(tmp_path / "wc", 2021, "N42E003", 5.95, 43.72, 480, 384, seed=4)  # 4 x 3.5 km
    write_grid(tmp_path / "wc", ["N42E003"])  # the folder's tile east of 6 E is open sea: no data
    path = tile if layout == "file" else tmp_path / "wc"
    recs = _records(_scene(5.951, 43.7195), WINDOWS)
    stage = lc.LandCover(lc.LandCoverConfig(source="local", path=str(path)), _region(tmp_path))
    st = StageStats()
    stage.process_batch(recs, st)
    stage.close()
    for r in recs:
        x, y = _utm_centres(r)
        lon, lat = TO_LL.transform(x, y)
        shape = (r.window.out_height, r.window.out_width)
        want = _expected(
            reference_values([tile], np.asarray(lon), np.asarray(lat)), shape, dict(WORLDCOVER_LEGEND)
        )
        sec = r.facts["ext"]["land_cover"]  # type: ignore[index]
        assert sec == {
            "product": "esa-worldcover",
            "version": "v200",
            "year": 2021,
            "source": "local",
            **want,
        }
    assert recs[0].facts["ext"]["land_cover"]["valid_fraction"] == 1.0  # type: ignore[index]
    assert 0 < recs[2].facts["ext"]["land_cover"]["valid_fraction"] < 0.9  # type: ignore[index]
    pixels = sum(r.window.out_height * r.window.out_width for r in recs)
    assert st.extra["centres_projected"] < pixels / 4  # the lattice, not every centre
