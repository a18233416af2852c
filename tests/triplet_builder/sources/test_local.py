"""Scene discovery on the real files and on small rasters georeferenced by GCPs, RPCs or nothing."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC
from rasterio.transform import from_origin

from tests.conftest import OPERA, PORT_TILE, SAFE_ZIP, SPATIALIST
from triplet_builder.config import SceneSourceConfig
from triplet_builder.geo import scene_geo
from triplet_builder.record import Backscatter, GeorefKind, Scale, Window
from triplet_builder.sources.local import find_scenes
from triplet_builder.sources.safe import read_safe
from triplet_builder.stages.base import Stats
from triplet_builder.stages.tile import ReadChips


def _src(*paths: Path | str, **kw: object) -> SceneSourceConfig:
    return SceneSourceConfig(paths=[str(p) for p in paths], **kw)  # type: ignore[arg-type]


def test_spatialist_names_give_time_orbit_pol_and_db() -> None:
    scenes, failures = find_scenes(_src(SPATIALIST / "*.tif"))
    assert failures == []
    assert [s.acquired for s in scenes] == [
        datetime(2015, 3, 9, 17, 30, 17, tzinfo=timezone.utc),
        datetime(2017, 3, 9, 5, 43, 56, tzinfo=timezone.utc),
        datetime(2017, 12, 10, 5, 43, 59, tzinfo=timezone.utc),
    ]
    assert [s.orbit_direction for s in scenes] == ["ascending", "descending", "descending"]
    s = scenes[-1]
    assert s.polarisations == ("VV",) and s.scale is Scale.DB and s.scale_source == "filename"
    assert s.georef is GeorefKind.AFFINE and s.crs == "EPSG:32631" and (s.width, s.height) == (268, 217)
    assert s.pixel_size_m == pytest.approx(20.0, abs=0.05)
    assert s.sensor == "Sentinel-1A" and s.nodata == -99.0


def test_opera_linear_gamma0_with_nan_mask_reads_as_db() -> None:
    (scene,), failures = find_scenes(_src(OPERA))
    assert failures == []
    assert scene.scale is Scale.LINEAR_POWER and scene.backscatter is Backscatter.GAMMA0
    assert scene.polarisations == ("VH",) and scene.acquired.year == 2024
    w = Window(0, 0, scene.width, scene.height, scene.width, scene.height)
    from triplet_builder.record import ChipRecord

    rec = ChipRecord("x", scene, w)
    (out,) = list(ReadChips(max_nodata_fraction=1.0).run([rec], Stats()))
    with rasterio.open(OPERA) as ds:
        raw = ds.read(1)
    finite = np.isfinite(raw) & (raw > 0)
    assert out.valid is not None and out.db is not None
    assert 0.30 < out.valid.mean() < 0.40  # the file is about 65 % NaN
    assert np.array_equal(out.valid, finite)
    np.testing.assert_allclose(out.db[0][finite], 10 * np.log10(raw[finite]), rtol=1e-5)
    assert np.isnan(out.db[0][~finite]).all()


def test_mostly_nodata_chip_is_rejected_with_reason() -> None:
    (scene,), _ = find_scenes(_src(OPERA))
    w = Window(0, 0, scene.width, scene.height, scene.width, scene.height)
    from triplet_builder.record import ChipRecord

    stats = Stats()
    (out,) = list(ReadChips(max_nodata_fraction=0.5).run([ChipRecord("x", scene, w)], stats))
    assert out.reject_reason == "nodata" and stats["tile"].rejected["nodata"] == 1


def test_safe_annotation_metadata_and_gcps() -> None:
    m = read_safe(SAFE_ZIP)
    assert m.sensor == "Sentinel-1A" and m.mode == "IW" and m.orbit_direction == "descending"
    assert m.polarisations == ("VV", "VH")
    assert (m.width, m.height) == (25560, 16712)
    assert len(m.gcps) == 210
    assert m.start == datetime(2015, 2, 3, 4, 31, 9, 448219, tzinfo=timezone.utc)
    lons = [g.x for g in m.gcps]
    lats = [g.y for g in m.gcps]
    assert 20 < min(lons) < max(lons) < 26 and 37 < min(lats) < max(lats) < 41  # central Greece


def test_safe_without_measurements_is_a_clear_failure() -> None:
    scenes, failures = find_scenes(_src(SAFE_ZIP))
    assert scenes == []
    (f,) = failures
    assert f.reason == "no_measurement" and "measurement" in f.message and "\n" not in f.message


def _write(path: Path, data: np.ndarray, **profile: object) -> Path:
    base = {
        "driver": "GTiff",
        "dtype": data.dtype.name,
        "count": 1,
        "height": data.shape[0],
        "width": data.shape[1],
    }
    with rasterio.open(path, "w", **{**base, **profile}) as ds:
        ds.write(data, 1)
    return path


def _safe_gcps_scaled(width: int, height: int) -> list[GroundControlPoint]:
    m = read_safe(SAFE_ZIP)
    sx, sy = width / m.width, height / m.height
    return [GroundControlPoint(row=g.row * sy, col=g.col * sx, x=g.x, y=g.y, z=g.z) for g in m.gcps]


def test_gcp_georeferenced_geotiff(tmp_path: Path) -> None:
    """A small image carrying the real SAFE geolocation grid (rescaled) as GCPs."""
    h, w = 167, 256
    gcps = _safe_gcps_scaled(w, h)
    data = np.random.default_rng(0).exponential(0.05, (h, w)).astype(np.float32)
    p = _write(
        tmp_path / "s1a-iw-grd-vv-20150203t043109-20150203t043134-004454-00574f-001.tiff",
        data,
        gcps=gcps,
        crs="EPSG:4326",
    )
    (scene,), failures = find_scenes(_src(p, scale="linear_power"))
    assert failures == [] and scene.georef is GeorefKind.GCPS and scene.polarisations == ("VV",)
    geo = scene_geo(scene)
    # the GCP transformer reproduces the grid points it was fitted on: GDAL fits a polynomial, which
    # misses the real SAFE grid by up to about 260 m (0.003 deg of longitude) at these points
    sel = gcps[::17]
    lon, lat = geo.pixel_to_lonlat(np.array([g.row for g in sel]), np.array([g.col for g in sel]))
    _, _, miss_m = Geod(ellps="WGS84").inv(lon, lat, [g.x for g in sel], [g.y for g in sel])
    assert np.max(miss_m) < 300.0, np.max(miss_m)
    r, c = geo.lonlat_to_pixel(lon, lat)
    np.testing.assert_allclose(r, [g.row for g in sel], atol=0.05)
    np.testing.assert_allclose(c, [g.col for g in sel], atol=0.05)
    # an IW GRD pixel is 10 m; the image is 100x smaller, so about 1 km
    assert 800 < scene.pixel_size_m < 1200


def test_rpc_georeferenced_geotiff(tmp_path: Path) -> None:
    rpc = RPC(
        height_off=0,
        height_scale=500,
        lat_off=43.4,
        lat_scale=0.05,
        line_den_coeff=[1] + [0] * 19,
        line_num_coeff=[0, 0, -1] + [0] * 17,
        line_off=50,
        line_scale=50,
        long_off=4.8,
        long_scale=0.05,
        samp_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1] + [0] * 18,
        samp_off=50,
        samp_scale=50,
    )
    data = np.full((100, 100), -10.0, dtype=np.float32)
    p = _write(tmp_path / "scene.tif", data, rpcs=rpc)
    (tmp_path / "scene.json").write_text(
        json.dumps({"acquired": "2021-06-01T10:00:00Z", "sensor": "TestSAR", "polarisation": "HH"})
    )
    (scene,), failures = find_scenes(_src(p, scale="db"))
    assert failures == []
    assert scene.georef is GeorefKind.RPCS and scene.sensor == "TestSAR" and scene.polarisations == ("HH",)
    assert scene.acquired_source == "sidecar" and scene.acquired.month == 6
    geo = scene_geo(scene)
    lon, lat = geo.pixel_to_lonlat(np.array([50.0, 0.0]), np.array([50.0, 100.0]))
    np.testing.assert_allclose(lon, [4.8, 4.85], atol=6e-4)  # within half a pixel (GDAL centre convention)
    np.testing.assert_allclose(lat, [43.4, 43.45], atol=6e-4)


def test_time_from_tags_and_scale_from_statistics(tmp_path: Path) -> None:
    data = np.random.default_rng(1).exponential(0.1, (64, 64)).astype(np.float32)
    p = tmp_path / "plain.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        dtype="float32",
        count=1,
        height=64,
        width=64,
        crs="EPSG:32631",
        transform=from_origin(600000, 4800000, 10, 10),
    ) as ds:
        ds.write(data, 1)
        ds.update_tags(ACQUISITION_START_TIME="2019-05-04T03:02:01Z")
        ds.set_band_description(1, "VH")
    (scene,), failures = find_scenes(_src(p))
    assert failures == []
    assert (
        scene.acquired == datetime(2019, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
        and scene.acquired_source == "tags"
    )
    assert scene.scale is Scale.LINEAR_POWER and scene.scale_source == "statistics"
    assert scene.polarisations == ("VH",)


def test_polarisation_files_of_one_scene_are_grouped(tmp_path: Path) -> None:
    for pol in ("VV", "VH"):
        shutil.copy(OPERA, tmp_path / OPERA.name.replace("_VH_", f"_{pol}_"))
    (scene,), failures = find_scenes(_src(tmp_path / "*.tif"))
    assert failures == []
    assert scene.polarisations == ("VV", "VH")
    assert "VV+VH" in scene.scene_id


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.tif", "missing"),
        (lambda d: (d / "notes.tif").write_text("not a raster") and d / "notes.tif", "not_a_raster"),
        (
            lambda d: _write(d / "S1A__IW___D_20171210T054359_VV_x_db.tif", np.zeros((8, 8), np.float32)),
            "no_georeferencing",
        ),
        (
            lambda d: _write(
                d / "undated.tif",
                np.zeros((8, 8), np.float32),
                crs="EPSG:32631",
                transform=from_origin(0, 0, 10, 10),
            ),
            "no_time",
        ),
    ],
)
def test_bad_files_are_failures_with_one_line(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    p = make(tmp_path)
    scenes, failures = find_scenes(_src(p, PORT_TILE))
    assert len(scenes) == 1  # the good file still goes through
    (f,) = failures
    assert f.reason == reason and "\n" not in f.message and str(p.name) in f.message
