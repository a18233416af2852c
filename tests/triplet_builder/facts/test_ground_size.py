"""Ground size per axis: a chip of a scene in EPSG:4326 (square degree pixels) is narrower east-west than
north-south; the georeference, the fact sheet, the offline caption and the checker all say so, in the
numbers recomputed here independently from the tile's geotransform with pyproj.Geod."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window as RioWindow

from schemas.codec import to_db
from tests.conftest import port_scene
from triplet_builder.facts.cfar import CfarParams, detector_info
from triplet_builder.facts.sheet import build_fact_sheet, chip_size_facts
from triplet_builder.facts.surface import surface_facts
from triplet_builder.geo import SceneGeo
from triplet_builder.record import BandRef, ChipRecord, SceneRef, Window
from triplet_builder.stages.georef import Georeference
from triplet_builder.text.consistency import check_caption
from triplet_builder.text.offline import OfflineWriter

PORT = (
    Path(__file__).parents[2] / "data/real/spatialist/S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
)
DEG = 0.00025  # square pixels of 0.00025 degrees: ~20 m east-west, ~28 m north-south at 43.4 N
WIN = Window(col_off=60, row_off=40, width=96, height=96, out_width=96, out_height=96)


@pytest.fixture(scope="module")
def geographic_scene(tmp_path_factory: pytest.TempPathFactory) -> SceneRef:
    """The real Port-Saint-Louis tile warped to EPSG:4326 with square degree pixels."""
    path = tmp_path_factory.mktemp("epsg4326") / "S1A__IW___D_20171210T054359_VV_4326_db.tif"
    with rasterio.open(PORT) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds, resolution=DEG
        )
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(path, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.bilinear)
    scene = dataclasses.replace(
        port_scene(), bands=(BandRef(str(path), 1, "VV"),), crs="EPSG:4326", width=width, height=height
    )
    return dataclasses.replace(scene, pixel_size_m=SceneGeo(scene).native_pixel_size_m())


def expected_size_m(path: str) -> tuple[float, float]:
    """Width (middle row, left to right edge) and height (middle column, top to bottom edge) of WIN."""
    with rasterio.open(path) as ds:
        t = ds.transform
    geod = Geod(ellps="WGS84")
    lat_mid = t.f + t.e * (WIN.row_off + WIN.height / 2)
    lon_mid = t.c + t.a * (WIN.col_off + WIN.width / 2)
    west, east = t.c + t.a * WIN.col_off, t.c + t.a * (WIN.col_off + WIN.width)
    north, south = t.f + t.e * WIN.row_off, t.f + t.e * (WIN.row_off + WIN.height)
    width = geod.inv(west, lat_mid, east, lat_mid)[2]
    height = geod.inv(lon_mid, north, lon_mid, south)[2]
    return width, height


def test_geographic_chip_has_its_ground_size_per_axis(geographic_scene: SceneRef) -> None:
    scene = geographic_scene
    width, height = expected_size_m(scene.bands[0].uri)
    assert height / width == pytest.approx(1 / np.cos(np.radians(43.39)), rel=0.01)  # not square
    record = Georeference().process(ChipRecord("c", scene, WIN))
    g = record.georef
    assert g is not None
    assert g.width_m == pytest.approx(width, rel=1e-6) and g.height_m == pytest.approx(height, rel=1e-6)

    with rasterio.open(scene.bands[0].uri) as ds:
        raw = ds.read(window=RioWindow(WIN.col_off, WIN.row_off, WIN.width, WIN.height))
    db, valid = to_db(raw, scene.scale, scene.nodata)
    facts = build_fact_sheet(
        scene=scene,
        window=WIN,
        georef=g,
        db=db,
        valid=valid,
        place=None,
        surface=surface_facts(db, valid, scene.polarisations),
        detections=[],
        detector=detector_info(CfarParams()),
        objects=[],
    )
    chip = facts["chip"]
    assert chip["width_m"] == round(width, 1) and chip["height_m"] == round(height, 1)
    assert chip["pixel_size_x_m"] == round(width / 96, 2) and chip["pixel_size_y_m"] == round(height / 96, 2)

    # the caption states the two sizes (in one of its wordings), never one square size
    w0, h0, wk, hk = f"{width:.0f}", f"{height:.0f}", f"{width / 1000:.2f}", f"{height / 1000:.2f}"
    stated = [f"{w0} m × {h0} m", f"{w0} by {h0} m", f"{wk} km × {hk} km"]
    writer = OfflineWriter()
    for i in range(6):
        fields = writer.caption_fields(facts, f"chip{i}")
        terrain = fields["terrain"] or ""
        assert any(s in terrain for s in stated), terrain
        assert f"{width / 96:.2f} m × {height / 96:.2f}" in terrain  # pixel size per axis
        assert check_caption(facts, fields) == []
    # the checker refuses the square size of the mean pixel (the old caption)
    mean = f"{(width + height) / 2:.0f}"
    wrong = dict(fields, terrain=f"The chip covers {mean} m × {mean} m.")
    assert any("length / distance" in p for p in check_caption(facts, wrong))
    # ... and a swapped pair: width and height are each some length of the facts, but not in that order
    swapped = dict(fields, terrain=f"The chip covers {h0} m × {w0} m.")
    assert [p for p in check_caption(facts, swapped) if "size" in p] != []
    assert check_caption(facts, dict(fields, terrain=f"The chip covers {wk} km by {hk} km.")) == []


def test_projected_chip_keeps_one_pixel_size() -> None:
    """A UTM chip of 20 m pixels: ~1280 m on both axes and no per-axis pixel sizes in the sheet."""
    record = Georeference().process(ChipRecord("c", port_scene(), Window(100, 120, 64, 64, 64, 64)))
    g = record.georef
    assert g is not None and g.width_m is not None and g.height_m is not None
    assert g.width_m == pytest.approx(1280.0, abs=1.5) and g.height_m == pytest.approx(1280.0, abs=1.5)
    assert set(chip_size_facts(g, 64, 64)) == {"width_px", "height_px", "pixel_size_m", "width_m", "height_m"}
