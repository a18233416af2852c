"""Label import: an xView3-layout CSV and vector files placed inside the real spatialist 20171210
scene, projected into chip pixels and checked against boxes worked out with rasterio's index()."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Polygon, box

from tests.conftest import port_scene
from triplet_builder.facts.labels import LabelSet
from triplet_builder.geo import scene_geo
from triplet_builder.record import Window

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
TO_LL = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
FROM_LL = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True)


def footprint(window: Window) -> Polygon:
    lon, lat = scene_geo(port_scene()).window_outline(window)
    return Polygon(zip(lon, lat, strict=True))


def pixel_centre_lonlat(row: int, col: int) -> tuple[float, float]:
    with rasterio.open(PORT) as ds:
        x, y = ds.xy(row, col)  # centre of the native pixel
    lon, lat = TO_LL.transform(x, y)
    return float(lon), float(lat)


def native_index(lon: float, lat: float) -> tuple[int, int]:
    """(row, col) of the native pixel holding lon/lat, by rasterio."""
    x, y = FROM_LL.transform(lon, lat)
    with rasterio.open(PORT) as ds:
        r, c = ds.index(x, y)
    return int(r), int(c)


WIN = Window(col_off=64, row_off=64, width=128, height=128, out_width=128, out_height=128)
WIN_HALF = Window(col_off=64, row_off=64, width=128, height=128, out_width=64, out_height=64)  # 40 m pixels


def write_xview3_csv(path: Path) -> list[tuple[float, float]]:
    pts = [pixel_centre_lonlat(100, 120), pixel_centre_lonlat(150, 80), pixel_centre_lonlat(70, 180)]
    outside = (4.5, 43.0)  # far from the scene
    rows = []
    specs = [(True, True, 60.0, "HIGH"), (True, False, np.nan, "MEDIUM"), (False, False, np.nan, "LOW")]
    for (lon, lat), (vessel, fishing, length, conf) in zip([*pts, outside], [*specs, specs[0]], strict=True):
        rows.append(
            {
                "scene_id": "S1A_port",
                "detect_lat": lat,
                "detect_lon": lon,
                "detect_scene_row": 1,
                "detect_scene_column": 2,
                "is_vessel": vessel,
                "is_fishing": fishing,
                "vessel_length_m": length,
                "confidence": conf,
                "distance_from_shore_km": 0.5,
            }
        )
    pd.DataFrame(rows).to_csv(path, index=False)
    return pts


def test_xview3_csv_points(tmp_path: Path) -> None:
    csv = tmp_path / "xview3_labels.csv"
    pts = write_xview3_csv(csv)
    labels = LabelSet.from_file(csv)
    assert len(labels) == 4 and labels.gdf.crs.to_epsg() == 4326
    objs = labels.objects_in_chip(scene_geo(port_scene()), WIN, footprint(WIN))
    assert len(objs) == 3  # the point outside the scene is not returned
    by_label = {o["label"]: o for o in objs}
    assert set(by_label) == {"fishing vessel", "vessel", "non-vessel object"}
    expected = {}
    for (lon, lat), name in zip(pts, ["fishing vessel", "vessel", "non-vessel object"], strict=True):
        r, c = native_index(lon, lat)
        y, x = r - WIN.row_off, c - WIN.col_off  # chip pixel, no resampling
        expected[name] = [x - 1, y - 1, x + 2, y + 2]  # 3 px: 60 m at 20 m, or the 3 px default
    assert native_index(*pts[0]) == (100, 120)
    for name, bbox in expected.items():
        assert by_label[name]["bbox"] == bbox, name
    fv = by_label["fishing vessel"]
    assert fv["length_m"] == 60.0 and by_label["vessel"]["length_m"] is None
    assert fv["cell"] == 2  # box centre (56.5, 36.5) of a 128 x 128 chip
    assert fv["source"] == "xview3_labels.csv"
    assert fv["attributes"] == {
        "scene_id": "S1A_port",
        "detect_scene_row": 1,
        "detect_scene_column": 2,
        "confidence": "HIGH",
        "distance_from_shore_km": 0.5,
    }
    json.dumps(objs)  # JSON-safe
    assert objs == sorted(objs, key=lambda o: (o["bbox"][1], o["bbox"][0]))


def test_point_boxes_follow_resampling_and_point_box_m(tmp_path: Path) -> None:
    csv = tmp_path / "pts.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame({"lat": [lat], "lon": [lon], "kind": ["buoy"]}).to_csv(csv, index=False)
    geo = scene_geo(port_scene())
    plain = LabelSet.from_file(csv, class_column="kind")
    # 2x downsampled chip: native pixel (100, 120) centre -> chip (18.25, 28.25); 3 px box around it
    (o,) = plain.objects_in_chip(geo, WIN_HALF, footprint(WIN_HALF))
    assert o["label"] == "buoy" and o["bbox"] == [27, 17, 30, 20]
    # 100 m boxes at 20 m pixels -> 5 px around chip pixel (36, 56)
    sized = LabelSet.from_file(csv, class_column="kind", point_box_m=100.0)
    (o,) = sized.objects_in_chip(geo, WIN, footprint(WIN))
    assert o["bbox"] == [54, 34, 59, 39] and o["attributes"] == {}


def test_polygons_in_a_projected_geopackage_and_geojson(tmp_path: Path) -> None:
    with rasterio.open(PORT) as ds:
        # a tank farm covering native rows 90..99 and cols 150..169, and a quay crossing the chip edge
        x0, y0 = ds.xy(90, 150, offset="ul")
        x1, y1 = ds.xy(100, 170, offset="ul")
        qx0, qy0 = ds.xy(180, 100, offset="ul")
        qx1, qy1 = ds.xy(200, 110, offset="ul")
        farx, fary = ds.xy(5, 5, offset="ul")
    utm = gpd.GeoDataFrame(
        {"class": ["tank farm", "quay", "jetty"], "height_m": [12.5, np.nan, 3.0]},
        geometry=[box(x0, y1, x1, y0), box(qx0, qy1, qx1, qy0), box(farx, fary - 40, farx + 40, fary)],
        crs="EPSG:32631",
    )
    gpkg = tmp_path / "port.gpkg"
    utm.to_file(gpkg, driver="GPKG")
    gj = tmp_path / "port.geojson"
    utm.to_crs("EPSG:4326").to_file(gj, driver="GeoJSON")
    geo = scene_geo(port_scene())
    for path in (gpkg, gj):
        objs = LabelSet.from_file(path).objects_in_chip(geo, WIN, footprint(WIN))
        by = {o["label"]: o for o in objs}
        assert set(by) == {"tank farm", "quay"}, path  # the jetty is outside the chip
        # hand-computed with rasterio index(): inner corner pixels of the tank farm are (90, 150) and (99, 169)
        lon_a, lat_a = pixel_centre_lonlat(90, 150)
        lon_b, lat_b = pixel_centre_lonlat(99, 169)
        ra, ca = native_index(lon_a, lat_a)
        rb, cb = native_index(lon_b, lat_b)
        assert by["tank farm"]["bbox"] == [ca - 64, ra - 64, cb + 1 - 64, rb + 1 - 64] == [86, 26, 106, 36]
        assert (
            by["tank farm"]["cell"] == 3 and by["tank farm"]["length_m"] is None
        )  # centre (96, 31): top right
        assert by["tank farm"]["attributes"] == {"height_m": 12.5}
        # the quay (rows 180..199) is clipped at the chip's bottom edge (row 192 = chip row 128)
        assert by["quay"]["bbox"] == [36, 116, 46, 128]
        assert by["quay"]["attributes"] == {"height_m": None}
        assert by["quay"]["source"] == path.name


def test_default_label_and_errors(tmp_path: Path) -> None:
    csv = tmp_path / "nocls.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame({"Latitude": [lat], "Longitude": [lon], "note": ["x"]}).to_csv(csv, index=False)
    ls = LabelSet.from_file(csv, default_label="target")
    (o,) = ls.objects_in_chip(scene_geo(port_scene()), WIN, footprint(WIN))
    assert o["label"] == "target" and o["attributes"] == {"note": "x"}

    with pytest.raises(ValueError, match=r"missing\.geojson not found"):
        LabelSet.from_file(tmp_path / "missing.geojson")
    with pytest.raises(ValueError, match="class column 'kind' not found"):
        LabelSet.from_file(csv, class_column="kind")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="no latitude/longitude columns"):
        LabelSet.from_file(bad)
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not json {")
    with pytest.raises(ValueError, match="cannot read it"):
        LabelSet.from_file(junk)
