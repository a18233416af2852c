"""Label import: xView3- and GFW-layout CSVs and vector files placed inside the real spatialist scenes,
matched to the scene they belong to (by id or time) and projected into chip pixels, checked against
boxes worked out independently with rasterio's index() and plain arithmetic."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Polygon, box

from tests.conftest import SPATIALIST, port_scene
from triplet_builder.facts.label_columns import resolve_columns
from triplet_builder.facts.labels import LabelSet
from triplet_builder.facts.scene_match import acquisition_key, id_matches, normalise_id, scene_names
from triplet_builder.geo import scene_geo
from triplet_builder.record import BandRef, SceneRef, Window

REAL = Path(__file__).parents[2] / "data" / "real"
PORT = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
TO_LL = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
FROM_LL = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True)
PORT_ID = "S1A__IW___D_20171210T054359"  # port_scene()'s id


def footprint(window: Window, scene: SceneRef | None = None) -> Polygon:
    lon, lat = scene_geo(scene or port_scene()).window_outline(window)
    return Polygon(zip(lon, lat, strict=True))


def pixel_centre_lonlat(row: int, col: int, tif: Path = PORT) -> tuple[float, float]:
    with rasterio.open(tif) as ds:
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
FULL = Window(0, 0, 268, 217, 268, 217)


def write_xview3_csv(path: Path) -> list[tuple[float, float]]:
    pts = [pixel_centre_lonlat(100, 120), pixel_centre_lonlat(150, 80), pixel_centre_lonlat(70, 180)]
    outside = (4.5, 43.0)  # far from the scene
    rows = []
    specs = [(True, True, 60.0, "HIGH"), (True, False, np.nan, "MEDIUM"), (False, False, np.nan, "LOW")]
    for (lon, lat), (vessel, fishing, length, conf) in zip([*pts, outside], [*specs, specs[0]], strict=True):
        rows.append(
            {
                "scene_id": PORT_ID,
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
    assert len(labels) == 4 and labels.gdf.crs.to_epsg() == 4326 and labels.match == "scene_id"
    objs = labels.objects_in_chip(port_scene(), WIN, footprint(WIN))
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
    assert fv["length_m"] == 60.0 and fv["box_from"] == "length"
    assert by_label["vessel"]["length_m"] is None and by_label["vessel"]["box_from"] == "nominal"
    assert fv["cell"] == 2  # box centre (56.5, 36.5) of a 128 x 128 chip
    assert fv["source"] == "xview3_labels.csv"
    # a small whitelist: the class as the file writes it and the confidence; no scene rows, no WKT
    assert fv["attributes"] == {"is_vessel": True, "is_fishing": True, "confidence": "HIGH"}
    json.dumps(objs)  # JSON-safe
    assert objs == sorted(objs, key=lambda o: (o["bbox"][1], o["bbox"][0]))


def test_point_boxes_follow_resampling_and_point_box_m(tmp_path: Path) -> None:
    csv = tmp_path / "pts.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame({"lat": [lat], "lon": [lon], "kind": ["buoy"]}).to_csv(csv, index=False)
    plain = LabelSet.from_file(csv, class_column="kind", match="none")
    # 2x downsampled chip: native pixel (100, 120) centre -> chip (18.25, 28.25); 3 px box around it
    (o,) = plain.objects_in_chip(port_scene(), WIN_HALF, footprint(WIN_HALF))
    assert o["label"] == "buoy" and o["bbox"] == [27, 17, 30, 20]
    # 100 m boxes at 20 m pixels -> 5 px around chip pixel (36, 56); the object's size stays unknown
    sized = LabelSet.from_file(csv, class_column="kind", point_box_m=100.0, match="none")
    (o,) = sized.objects_in_chip(port_scene(), WIN, footprint(WIN))
    assert o["bbox"] == [54, 34, 59, 39] and o["attributes"] == {"source_class": "buoy"}
    assert o["length_m"] is None and o["box_from"] == "nominal"


@pytest.mark.parametrize(
    ("length_m", "window"), [(100.0, WIN), (200.0, WIN_HALF), (160.0, WIN_HALF), (60.0, WIN), (340.0, WIN)]
)
def test_length_sets_the_box_size_in_chip_pixels(tmp_path: Path, length_m: float, window: Window) -> None:
    """A square of the object's length: side = length / chip pixel size, centred on the point; the
    length wins over point_box_m, which only sizes objects of unknown length."""
    csv = tmp_path / "len.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame({"lat": [lat], "lon": [lon], "length_m": [length_m]}).to_csv(csv, index=False)
    (o,) = LabelSet.from_file(csv, point_box_m=500.0, match="none").objects_in_chip(
        port_scene(), window, footprint(window)
    )
    # independent arithmetic: chip pixel size from the window, centre from rasterio's pixel index
    px = 20.0 * window.width / window.out_width
    r, c = native_index(lon, lat)
    scale = window.out_width / window.width
    xc, yc = (c - window.col_off + 0.5) * scale, (r - window.row_off + 0.5) * scale
    side = length_m / px
    x1, y1 = math.floor(xc - side / 2 + 0.5), math.floor(yc - side / 2 + 0.5)  # nearest edge, half up
    assert o["bbox"] == [x1, y1, x1 + round(side), y1 + round(side)]
    assert o["bbox"][2] - o["bbox"][0] == round(length_m / px)
    assert o["length_m"] == length_m and o["box_from"] == "length"


def test_polygons_in_a_projected_geopackage_and_geojson(tmp_path: Path) -> None:
    with rasterio.open(PORT) as ds:
        # a tank farm covering native rows 90..99 and cols 150..169, and a quay crossing the chip edge
        x0, y0 = ds.xy(90, 150, offset="ul")
        x1, y1 = ds.xy(100, 170, offset="ul")
        qx0, qy0 = ds.xy(180, 100, offset="ul")
        qx1, qy1 = ds.xy(200, 110, offset="ul")
        farx, fary = ds.xy(5, 5, offset="ul")
    utm = gpd.GeoDataFrame(
        {"class": ["tank farm", "quay", "jetty"], "height_m": [12.5, np.nan, 3.0], "fid_x": [1, 2, 3]},
        geometry=[box(x0, y1, x1, y0), box(qx0, qy1, qx1, qy0), box(farx, fary - 40, farx + 40, fary)],
        crs="EPSG:32631",
    )
    gpkg = tmp_path / "port.gpkg"
    utm.to_file(gpkg, driver="GPKG")
    gj = tmp_path / "port.geojson"
    utm.to_crs("EPSG:4326").to_file(gj, driver="GeoJSON")
    for path in (gpkg, gj):
        objs = LabelSet.from_file(path, match="none").objects_in_chip(port_scene(), WIN, footprint(WIN))
        by = {o["label"]: o for o in objs}
        assert set(by) == {"tank farm", "quay"}, path  # the jetty is outside the chip
        # hand-computed with rasterio index(): inner corner pixels of the tank farm are (90, 150) and (99, 169)
        lon_a, lat_a = pixel_centre_lonlat(90, 150)
        lon_b, lat_b = pixel_centre_lonlat(99, 169)
        ra, ca = native_index(lon_a, lat_a)
        rb, cb = native_index(lon_b, lat_b)
        assert by["tank farm"]["bbox"] == [ca - 64, ra - 64, cb + 1 - 64, rb + 1 - 64] == [86, 26, 106, 36]
        assert by["tank farm"]["cell"] == 3 and by["tank farm"]["length_m"] is None
        assert by["tank farm"]["box_from"] == "outline"
        # only the whitelist: other columns (height_m, fid_x) and the geometry stay out
        assert by["tank farm"]["attributes"] == {"source_class": "tank farm"}
        # the quay (rows 180..199) is clipped at the chip's bottom edge (row 192 = chip row 128)
        assert by["quay"]["bbox"] == [36, 116, 46, 128]
        assert by["quay"]["source"] == path.name


def test_default_label_and_errors(tmp_path: Path) -> None:
    csv = tmp_path / "nocls.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame({"Latitude": [lat], "Longitude": [lon], "note": ["x"]}).to_csv(csv, index=False)
    ls = LabelSet.from_file(csv, default_label="target", match="none")
    (o,) = ls.objects_in_chip(port_scene(), WIN, footprint(WIN))
    assert o["label"] == "target" and o["attributes"] == {}

    with pytest.raises(ValueError, match=r"missing\.geojson not found"):
        LabelSet.from_file(tmp_path / "missing.geojson")
    with pytest.raises(ValueError, match=r"column 'kind' \(facts.labels.columns.class\) not found"):
        LabelSet.from_file(csv, class_column="kind", match="none")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="no latitude/longitude columns"):
        LabelSet.from_file(bad)
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not json {")
    with pytest.raises(ValueError, match="cannot read it"):
        LabelSet.from_file(junk)


# -- the scene a label belongs to ------------------------------------------------------------------
CAMARGUE_2015 = SPATIALIST / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
CAMARGUE_2017 = SPATIALIST / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
SAFE_2017 = "S1A_IW_GRDH_1SDV_20170309T054356_20170309T054421_015623_019B1B_6D00"


def camargue(tif: Path, acquired: datetime, orbit: str) -> SceneRef:
    """The SceneRef of a real Camargue tile, named as the local source names it (the file stem); the tiles
    share the port tile's grid (268 x 217 px of 20 m, EPSG:32631)."""
    return dataclasses.replace(
        port_scene(),
        scene_id=tif.stem,
        bands=(BandRef(str(tif), 1, "VV"),),
        acquired=acquired,
        orbit_direction=orbit,
    )


S2015 = camargue(CAMARGUE_2015, datetime(2015, 3, 9, 17, 30, 17, tzinfo=timezone.utc), "ascending")
S2017 = camargue(CAMARGUE_2017, datetime(2017, 3, 9, 5, 43, 56, tzinfo=timezone.utc), "descending")


def test_each_acquisition_gets_only_its_own_objects(tmp_path: Path) -> None:
    """Two real acquisitions of the same place: each scene's chips get only the objects of its own
    product, named in the label file by another form of the id (SAFE with suffix, pyroSAR name); ids
    one second or one mission off match no scene."""
    pts = [pixel_centre_lonlat(r, c, CAMARGUE_2017) for r, c in [(100, 120), (110, 130), (60, 60), (70, 70)]]
    ids = [
        f"{SAFE_2017}.SAFE",
        "s1a__iw___a_20150309T173017_VV_grd_mli_geo_norm_db.tif",  # the 2015 file, other case and suffix
        SAFE_2017.replace("T054356_", "T054357_", 1),  # one second later: another acquisition
        SAFE_2017.replace("S1A_", "S1B_", 1),  # the other satellite
    ]
    pd.DataFrame(
        {
            "scene_id": ids,
            "detect_lat": [p[1] for p in pts],
            "detect_lon": [p[0] for p in pts],
            "is_vessel": [True] * 4,
            "is_fishing": [False] * 4,
            "detect_id": ["a", "b", "c", "d"],
        }
    ).to_csv(tmp_path / "two_passes.csv", index=False)
    labels = LabelSet.from_file(tmp_path / "two_passes.csv")
    got = {}
    for scene in (S2015, S2017):
        objs = labels.objects_in_chip(scene, FULL, footprint(FULL, scene))
        got[scene.scene_id] = [o["attributes"]["id"] for o in objs]
    assert got == {S2017.scene_id: ["a"], S2015.scene_id: ["b"]}
    counts = labels.account([(S2015, [FULL]), (S2017, [FULL])])
    assert counts["total"] == 4 and counts["unmatched"] == 2 and counts["in_chips"] == 2
    assert counts["matched_outside_chips"] == 0 and counts["match"] == "scene_id"
    # a matched label outside every chip window of its scene is counted as such
    corner = Window(0, 0, 32, 32, 32, 32)
    counts = labels.account([(S2015, [corner]), (S2017, [corner])])
    assert (counts["in_chips"], counts["matched_outside_chips"], counts["unmatched"]) == (0, 2, 2)


def test_scene_id_rule_is_strict() -> None:
    names, keys = scene_names(S2017)
    assert normalise_id(f"/data/{SAFE_2017}.SAFE.zip") == SAFE_2017
    assert acquisition_key(SAFE_2017) == acquisition_key(S2017.scene_id)
    for same in (SAFE_2017, f"{SAFE_2017}.zip", f"{SAFE_2017}.SAFE", S2017.scene_id, f"{S2017.scene_id}.tif"):
        assert id_matches(same, names, keys), same
    for other in (
        "S1A_IW_GRDH_1SDV_20170309",  # a date is not an acquisition
        S2017.scene_id[:20],  # nor a prefix
        "GRD",  # nor the product type
        SAFE_2017.replace("_IW_", "_EW_", 1),  # other mode
        "",
        "05bc615a9b0e1159t",  # an xView3-style id names another scene
    ):
        assert not id_matches(other, names, keys), other


def test_gfw_style_csv_is_matched_by_time_with_its_tolerance(tmp_path: Path) -> None:
    """Global Fishing Watch-style detections (timestamp, lat, lon, length_m, detect_id, score) have no
    xView3 column; they are matched by time: |t - scene start| <= 600 s by default, edges included."""
    lon, lat = pixel_centre_lonlat(100, 120, CAMARGUE_2017)
    t0 = S2017.acquired
    offsets = {"in-600": -600, "in+600": 600, "out+601": 601, "out-601": -601, "in+0": 0}
    stamps = [(t0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in offsets.values()]
    stamps.append("2015-03-09 17:30:20")  # zone-less: UTC, 3 s after the 2015 start
    pd.DataFrame(
        {
            "detect_id": [*offsets, "in2015"],
            "timestamp": stamps,
            "lat": [lat] * 6,
            "lon": [lon] * 6,
            "length_m": [42.0] * 6,
            "score": [0.9] * 6,
        }
    ).to_csv(tmp_path / "gfw.csv", index=False)
    labels = LabelSet.from_file(tmp_path / "gfw.csv")
    assert labels.match == "time" and labels.time_tolerance_s == 600.0
    ids_2017 = {o["attributes"]["id"] for o in labels.objects_in_chip(S2017, FULL, footprint(FULL, S2017))}
    assert ids_2017 == {"in-600", "in+600", "in+0"}
    (o,) = labels.objects_in_chip(S2015, FULL, footprint(FULL, S2015))
    assert o["attributes"] == {"id": "in2015", "score": 0.9} and o["length_m"] == 42.0
    tight = LabelSet.from_file(tmp_path / "gfw.csv", time_tolerance_s=0)
    assert [o["attributes"]["id"] for o in tight.objects_in_chip(S2017, FULL, footprint(FULL, S2017))] == [
        "in+0"
    ]
    counts = labels.account([(S2015, [FULL]), (S2017, [FULL])])
    assert (counts["in_chips"], counts["unmatched"], counts["time_tolerance_s"]) == (4, 2, 600.0)


def test_common_column_names_are_recognised() -> None:
    xview3 = ["scene_id", "detect_lat", "detect_lon", "detect_scene_row", "detect_scene_column"]
    xview3 += ["vessel_length_m", "is_vessel", "is_fishing", "distance_from_shore_km", "confidence"]
    xview3 += ["source", "top", "left", "bottom", "right"]
    c = resolve_columns("x", xview3, {}, need_latlon=True)
    assert (c.lat, c.lon, c.length_m, c.scene_id, c.time, c.klass) == (
        "detect_lat",
        "detect_lon",
        "vessel_length_m",
        "scene_id",
        None,
        None,
    )
    assert c.xview3_flags == ("is_vessel", "is_fishing") and c.attributes == {"confidence": "confidence"}
    gfw = ["detect_id", "scene_id", "timestamp", "lat", "lon", "length_m", "presence_score", "mmsi"]
    c = resolve_columns("g", gfw, {}, need_latlon=True)
    assert (c.lat, c.lon, c.length_m, c.scene_id, c.time) == (
        "lat",
        "lon",
        "length_m",
        "scene_id",
        "timestamp",
    )
    assert c.attributes == {"id": "detect_id", "score": "presence_score"}
    own = ["scene_id", "acquired", "label", "length_m", "Latitude", "Longitude"]
    c = resolve_columns("o", own, {}, need_latlon=True)
    assert (c.klass, c.time, c.lat, c.lon) == ("label", "acquired", "Latitude", "Longitude")
    # a unit-less "length" is not taken for metres unless mapped
    c = resolve_columns("u", ["lat", "lon", "length"], {}, need_latlon=True)
    assert c.length_m is None
    assert resolve_columns("u", ["lat", "lon", "length"], {"length_m": "length"}, need_latlon=True).length_m


def test_bad_columns_are_one_line_errors(tmp_path: Path) -> None:
    lon, lat = pixel_centre_lonlat(100, 120)
    both = tmp_path / "both.csv"
    pd.DataFrame({"lat": [lat], "detect_lat": [lat], "lon": [lon], "scene_id": [PORT_ID]}).to_csv(both)
    with pytest.raises(ValueError, match=r"both\.csv: columns \['detect_lat', 'lat'\] could all be the lat"):
        LabelSet.from_file(both)
    assert LabelSet.from_file(both, columns={"lat": "lat"}).match == "scene_id"
    nomatch = tmp_path / "nomatch.csv"
    pd.DataFrame({"lat": [lat], "lon": [lon]}).to_csv(nomatch, index=False)
    with pytest.raises(ValueError, match=r"nomatch\.csv: no scene id column .* or match: none") as e:
        LabelSet.from_file(nomatch)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"match: time but no time column"):
        LabelSet.from_file(nomatch, match="time")
    badtime = tmp_path / "badtime.csv"
    pd.DataFrame({"lat": [lat], "lon": [lon], "time": ["yesterday"]}).to_csv(badtime, index=False)
    with pytest.raises(ValueError, match=r"column 'time' holds 1 value\(s\) that are not times"):
        LabelSet.from_file(badtime)
    badlen = tmp_path / "badlen.csv"
    pd.DataFrame({"lat": [lat], "lon": ["east"], "scene_id": [PORT_ID]}).to_csv(badlen, index=False)
    with pytest.raises(ValueError, match=r"column 'lon' holds 1 value\(s\) that are not numbers"):
        LabelSet.from_file(badlen)
    with pytest.raises(
        ValueError, match=r"column 'heading' \(facts.labels.columns.time\) not found; .*'lat'"
    ):
        LabelSet.from_file(nomatch, columns={"time": "heading"})
