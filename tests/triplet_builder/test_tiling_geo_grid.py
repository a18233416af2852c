"""Tiling is a pure function; georeferencing agrees with rasterio; the Major TOM grid names cells."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from tests.conftest import PORT_TILE
from triplet_builder.config import SceneSourceConfig
from triplet_builder.geo import scene_geo, utm_crs_for, utm_zone_name
from triplet_builder.grid import cell_bounds, grid_cell
from triplet_builder.record import Window
from triplet_builder.sources.local import find_scenes
from triplet_builder.tiling import ChipTooLargeError, plan_windows


def test_windows_cover_the_scene_with_a_flush_last_row_and_column() -> None:
    ws = plan_windows(268, 217, size=64, stride=32, native_pixel_m=20)
    cols = sorted({w.col_off for w in ws})
    rows = sorted({w.row_off for w in ws})
    assert cols == [0, 32, 64, 96, 128, 160, 192, 204]  # 204 = 268 - 64, flush with the right edge
    assert rows == [0, 32, 64, 96, 128, 153]
    assert len(ws) == len(cols) * len(rows)
    assert all(w.col_off + w.width <= 268 and w.row_off + w.height <= 217 for w in ws)


def test_target_pixel_size_reads_more_native_pixels() -> None:
    ws = plan_windows(1000, 1000, size=100, stride=100, native_pixel_m=10, target_pixel_m=20)
    assert {(w.width, w.out_width) for w in ws} == {(200, 100)}
    assert len(ws) == 25


def test_chip_larger_than_scene() -> None:
    with pytest.raises(ChipTooLargeError, match="larger than the scene"):
        plan_windows(268, 217, size=256, stride=256, native_pixel_m=20)


def test_affine_geo_matches_rasterio_and_pyproj() -> None:
    (_, _, scene), _ = find_scenes(SceneSourceConfig(paths=[str(PORT_TILE.parent / "*.tif")]))
    geo = scene_geo(scene)
    with rasterio.open(PORT_TILE) as ds:
        x, y = ds.xy(10, 20)  # centre of pixel row 10, col 20
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(x, y)
    glon, glat = geo.pixel_to_lonlat(np.array([10.5]), np.array([20.5]))
    assert glon[0] == pytest.approx(lon, abs=1e-9) and glat[0] == pytest.approx(lat, abs=1e-9)
    r, c = geo.lonlat_to_pixel(glon, glat)
    assert r[0] == pytest.approx(10.5) and c[0] == pytest.approx(20.5)
    w = Window(32, 64, 64, 64, 32, 32)  # a 2x downsampled chip
    a = geo.affine_of_window(w)
    assert a is not None and a[0] == pytest.approx(40.0) and a[4] == pytest.approx(-40.0)
    y, x = geo.lonlat_to_chip_pixel(w, *geo.chip_pixel_to_lonlat(w, np.array([0.25]), np.array([0.75])))
    assert y[0] == pytest.approx(8.0) and x[0] == pytest.approx(24.0)
    lon_ring, _ = geo.window_outline(w, per_edge=4)
    assert len(lon_ring) == 17 and lon_ring[0] == lon_ring[-1]


def test_chip_positions_of_a_non_square_window_match_rasterio() -> None:
    """(y, x) in [0, 1] scale by the window's height and width respectively (a square chip hides a swap)."""
    (_, _, scene), _ = find_scenes(SceneSourceConfig(paths=[str(PORT_TILE.parent / "*.tif")]))
    geo = scene_geo(scene)
    w = Window(30, 50, 80, 40, 80, 40)  # col_off, row_off, width 80, height 40
    lon, lat = geo.chip_pixel_to_lonlat(w, np.array([0.25]), np.array([0.75]))
    with rasterio.open(PORT_TILE) as ds:
        x, y = ds.xy(50 + 0.25 * 40, 30 + 0.75 * 80, offset="ul")  # row 60, col 90 (pixel corner units)
    elon, elat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(x, y)
    assert lon[0] == pytest.approx(elon, abs=1e-9) and lat[0] == pytest.approx(elat, abs=1e-9)


def test_utm_zone() -> None:
    assert utm_crs_for(4.8, 43.4) == "EPSG:32631" and utm_zone_name(4.8, 43.4) == "31N"
    assert utm_crs_for(-105.96, 39.96) == "EPSG:32613"
    assert utm_crs_for(146.0, -5.5) == "EPSG:32755"


def test_major_tom_cells() -> None:
    assert grid_cell(0.01, 0.01) == "0U_0R"
    assert grid_cell(-0.01, -0.01) == "1D_1L"
    name = grid_cell(4.81, 43.38)
    lon0, lat0, lon1, lat1 = cell_bounds(name)
    assert lon0 <= 4.81 < lon1 and lat0 <= 43.38 < lat1
    # rows are ~10 km tall everywhere; columns ~10 km wide at the row's latitude
    assert (lat1 - lat0) * 111.32 == pytest.approx(10.0, rel=0.01)
    assert (lon1 - lon0) * 111.32 * np.cos(np.radians(lat0)) == pytest.approx(10.0, rel=0.01)
