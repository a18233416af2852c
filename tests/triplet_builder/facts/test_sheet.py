"""The whole fact sheet of a real 64 x 64 chip of the spatialist 20171210 scene, end to end, validated
against schemas/facts.schema.json; seasons; schema failures name their path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window as RioWindow
from shapely.geometry import Polygon

from schemas.codec import to_db
from tests.conftest import port_scene
from triplet_builder.facts.cfar import CfarParams, detect, detector_info
from triplet_builder.facts.labels import LabelSet
from triplet_builder.facts.places import nearest_place
from triplet_builder.facts.sheet import build_fact_sheet, season_of, validate_facts
from triplet_builder.facts.surface import surface_facts, water_mask
from triplet_builder.geo import scene_geo, utm_crs_for
from triplet_builder.grid import grid_cell
from triplet_builder.record import Georef, SceneRef, Window

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
WIN = Window(col_off=100, row_off=120, width=64, height=64, out_width=64, out_height=64)


def chip_georef(scene: SceneRef, window: Window) -> tuple[Georef, Polygon]:
    geo = scene_geo(scene)
    lon, lat = geo.window_outline(window)
    fp = Polygon(zip(lon, lat, strict=True))
    clon, clat = geo.pixel_to_lonlat(
        np.array([window.row_off + window.height / 2]), np.array([window.col_off + window.width / 2])
    )
    c_lon, c_lat = float(clon[0]), float(clat[0])
    georef = Georef(
        footprint_wkb=fp.wkb,
        bbox=tuple(float(v) for v in fp.bounds),  # type: ignore[arg-type]
        centre_lon=c_lon,
        centre_lat=c_lat,
        native_crs=scene.crs,
        transform=geo.affine_of_window(window),
        pixel_size_m=geo.native_pixel_size_m() * window.width / window.out_width,
        grid_cell=grid_cell(c_lon, c_lat),
        utm_crs=utm_crs_for(c_lon, c_lat),
    )
    georef.width_m, georef.height_m = geo.window_ground_size_m(window)
    return georef, fp


def real_sheet(tmp_path: Path) -> dict[str, Any]:
    scene = port_scene()
    with rasterio.open(PORT) as ds:
        raw = ds.read(window=RioWindow(WIN.col_off, WIN.row_off, WIN.width, WIN.height))  # (1, 64, 64)
    db, valid = to_db(raw, scene.scale, scene.nodata)
    georef, fp = chip_georef(scene, WIN)
    water, _ = water_mask(db, valid, scene.polarisations)
    params = CfarParams()
    dets = detect(db[0], valid, water, georef.pixel_size_m, params)
    # one labelled vessel at native pixel (140, 130) of the scene
    with rasterio.open(PORT) as ds:
        x, y = ds.xy(140, 130)
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(x, y)
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {"detect_lat": [lat], "detect_lon": [lon], "is_vessel": [True], "is_fishing": [False]}
    ).to_csv(csv, index=False)
    objects = LabelSet.from_file(csv, match="none").objects_in_chip(scene, WIN, fp)
    return build_fact_sheet(
        scene=scene,
        window=WIN,
        georef=georef,
        db=db,
        valid=valid,
        place=nearest_place(georef.centre_lon, georef.centre_lat),
        surface=surface_facts(db, valid, scene.polarisations),
        detections=dets,
        detector=detector_info(params),
        objects=objects,
    )


def test_real_chip_end_to_end(tmp_path: Path) -> None:
    facts = real_sheet(tmp_path)
    validate_facts(facts)  # already validated inside; valid again as plain JSON round trip
    assert json.loads(json.dumps(facts)) == facts
    assert facts["version"] == "1.0"
    assert facts["chip"]["width_px"] == 64 and facts["chip"]["height_px"] == 64
    assert facts["chip"]["pixel_size_m"] == pytest.approx(20.0, abs=0.05)
    assert facts["chip"]["width_m"] == pytest.approx(1280.0, abs=5.0)
    acq = facts["acquisition"]
    assert acq == {
        "sensor": "Sentinel-1A",
        "mode": "IW",
        "date": "2017-12-10",
        "time_utc": "05:43:59",
        "year": 2017,
        "season": "winter",
        "orbit_direction": "descending",
        "polarisations": ["VV"],
        "backscatter": "sigma0",
        "backscatter_source": "declared",
    }
    loc = facts["location"]
    assert 4.783 < loc["centre_lon"] < 4.850 and 43.366 < loc["centre_lat"] < 43.404
    assert facts["place"]["country"] == "France"
    assert len(facts["surface"]["cells"]) == 9
    assert facts["detections"]["detector"]["name"] == "CA-CFAR"
    (obj,) = facts["objects"]
    assert obj["label"] == "vessel" and obj["bbox"] == [29, 19, 32, 22]  # native (140, 130) -> chip (20, 30)


def test_schema_failure_names_the_path(tmp_path: Path) -> None:
    facts = real_sheet(tmp_path)
    bad = copy.deepcopy(facts)
    bad["surface"]["cells"][3]["water_fraction"] = 1.5
    with pytest.raises(ValueError, match=r"\$\.surface\.cells\[3\]\.water_fraction"):
        validate_facts(bad)
    bad = copy.deepcopy(facts)
    del bad["surface"]["mean_db"]
    with pytest.raises(ValueError, match=r"at \$\.surface: must contain \['mean_db'\]"):
        validate_facts(bad)
    bad = copy.deepcopy(facts)
    bad["acquisition"]["date"] = "2017-13-45"
    with pytest.raises(ValueError, match=r"\$\.acquisition\.date"):
        validate_facts(bad)


def test_build_rejects_bad_inputs(tmp_path: Path) -> None:
    scene = port_scene()
    georef, _ = chip_georef(scene, WIN)
    db = np.full((1, 64, 64), -15.0, dtype=np.float32)
    valid = np.ones((64, 64), dtype=bool)
    surface = surface_facts(db, valid, ("VV",))
    kwargs: dict[str, Any] = dict(
        scene=scene, window=WIN, georef=georef, db=db, valid=valid, place=None, surface=surface,
        detections=[], detector=detector_info(), objects=[],
    )  # fmt: skip
    facts = build_fact_sheet(**kwargs)
    assert facts["place"] is None and facts["detections"]["items"] == []
    with pytest.raises(ValueError, match="window says 64 x 64"):
        build_fact_sheet(**{**kwargs, "db": db[:, :32], "valid": valid[:32]})
    bad_det = {
        "bbox": [1, 2, 3, 4],
        "cell": 1,
        "peak_px": [1, 2],
        "peak_db": 1.0,
        "area_px": 0,
        "length_m": None,
        "on_water": True,
    }
    with pytest.raises(ValueError, match=r"\$\.detections\.items\[0\]\.area_px"):
        build_fact_sheet(**{**kwargs, "detections": [bad_det]})
    # numpy scalars from upstream code are turned into plain JSON values, not rejected
    np_det = {**bad_det, "cell": np.int64(5), "area_px": np.int32(1), "on_water": np.bool_(True)}
    assert build_fact_sheet(**{**kwargs, "detections": [np_det]})["detections"]["items"][0]["area_px"] == 1


def test_boxes_are_stored_normalized_and_cells_follow_them() -> None:
    """bbox_norm = bbox / chip size, and the cell is that of its centre cut at 1/3, 2/3 (not at the
    integer pixels 21 / 42 of a 64 px chip)."""
    scene = port_scene()
    georef, _ = chip_georef(scene, WIN)
    db = np.full((1, 64, 64), -15.0, dtype=np.float32)
    valid = np.ones((64, 64), dtype=bool)
    det = {"bbox": [20, 41, 22, 43], "cell": 9, "peak_px": [21, 42], "peak_db": 3.0, "area_px": 4,
           "length_m": None, "on_water": False}  # fmt: skip
    obj = {"label": "ship", "class": "ship", "bbox": [40, 0, 44, 3], "cell": 9, "source": "t"}
    facts = build_fact_sheet(
        scene=scene, window=WIN, georef=georef, db=db, valid=valid, place=None,
        surface=surface_facts(db, valid, ("VV",)), detections=[det], detector=detector_info(), objects=[obj],
    )  # fmt: skip
    d, o = facts["detections"]["items"][0], facts["objects"][0]
    assert d["bbox_norm"] == [20 / 64, 41 / 64, 22 / 64, 43 / 64]
    # centre (21, 42) px: 21 / 64 < 1 / 3 (left band), 42 / 64 < 2 / 3 (middle band): cell 4
    assert d["cell"] == 4
    assert (
        o["bbox_norm"][0] == 0.625 and o["cell"] == 2
    )  # centre (42, 1.5) px: 0.656 < 2 / 3, top row: cell 2


@pytest.mark.parametrize(
    ("month", "lat", "season"),
    [(12, 43.0, "winter"), (1, 10.0, "winter"), (3, 0.0, "spring"), (7, 50.0, "summer"), (11, 1.0, "autumn"),
     (12, -33.9, "summer"), (4, -10.0, "autumn"), (8, -40.0, "winter"), (9, -1.0, "spring")],
)  # fmt: skip
def test_meteorological_seasons(month: int, lat: float, season: str) -> None:
    assert season_of(month, lat) == season
