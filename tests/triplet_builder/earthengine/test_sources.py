"""Sentinel-1 from Earth Engine: the search (real `ee.data.listImages` against the loopback catalogue)
and the window reader (real computePixels) on virtual UTM scenes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from tests.servers import LoopbackServer, serve
from tests.servers.earthengine import EEHandler, ee_server_attrs, pixel_requests, request_log
from tests.triplet_builder.earthengine.s1 import COLLECTION, PORT_ID, REGION_BBOX, s1_world
from triplet_builder.config import ConfigError, RegionConfig
from triplet_builder.geo import scene_geo
from triplet_builder.record import Backscatter, GeorefKind, Scale, Window
from triplet_builder.sources import discover_scenes
from triplet_builder.sources.earthengine import EarthEngineBandRef, EarthEngineWindowReader, find_ee_scenes
from triplet_builder.stages.base import Stats
from triplet_builder.stages.tile import ReadChips


@pytest.fixture
def world(tmp_path: Path) -> Iterator[LoopbackServer]:
    rasters, catalogue = s1_world(tmp_path)
    with serve(EEHandler, **ee_server_attrs(rasters, catalogue, page_size=2)) as srv:
        yield srv


def region(srv: LoopbackServer, tmp_path: Path, **scenes: Any) -> RegionConfig:
    raw: dict[str, Any] = {
        "name": "ee-s1",
        "area": {"bbox": list(REGION_BBOX)},
        "years": [2017],
        "scenes": {"type": "earthengine", "orbit_direction": "descending", **scenes},
        "embeddings": {"type": "earthengine"},
        "earthengine": {"url": srv.url, "project": "test-project", "backoff_s": 0.01, "max_backoff_s": 0.05},
        "cache_dir": str(tmp_path / "cache"),
        "output": {"dir": str(tmp_path / "out")},
    }
    return RegionConfig.model_validate(raw)


def test_search_keeps_only_matching_images(world: LoopbackServer, tmp_path: Path) -> None:
    scenes, failures = discover_scenes(region(world, tmp_path))
    assert failures == []
    assert [s.scene_id for s in scenes] == [PORT_ID]
    s = scenes[0]
    assert s.sensor == "Sentinel-1A" and s.mode == "IW" and s.orbit_direction == "descending"
    assert s.polarisations == ("VV", "VH") and s.product == "GRD"
    assert (s.scale, s.backscatter, s.georef) == (Scale.DB, Backscatter.SIGMA0, GeorefKind.AFFINE)
    assert s.acquired.isoformat() == "2017-12-10T05:43:59+00:00"
    assert s.uris == (f"ee://{COLLECTION}/{PORT_ID}",)
    assert isinstance(s.bands[0], EarthEngineBandRef) and s.bands[0].settings.url == world.url
    # the server was asked for IW, descending, 2017, over the region (filters it applies itself)
    lists = [r for r in request_log(world) if r.kind == "listAssets"]
    assert len(lists) == 2  # three matches in pages of two: the client follows nextPageToken


def test_virtual_scene_grid_covers_the_region_in_utm(world: LoopbackServer, tmp_path: Path) -> None:
    (s,), _ = find_ee_scenes(region(world, tmp_path, pixel_size_m=20))
    assert s.crs == "EPSG:32631" and s.pixel_size_m == 20.0 and s.transform is not None
    a, _, c, _, e, f = s.transform
    assert (a, e) == (20.0, -20.0) and c % 20 == 0 and f % 20 == 0
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True)
    w, so, ea, n = REGION_BBOX
    xs, ys = to_utm.transform([w, ea, w, ea], [so, so, n, n])
    assert c <= min(xs) and f >= max(ys)
    assert c + s.width * 20 >= max(xs) and f - s.height * 20 <= min(ys)
    assert s.width * 20 - (max(xs) - min(xs)) < 40  # no more than the snapping
    assert scene_geo(s).kind is GeorefKind.AFFINE  # opens no file


def test_filters_coverage_max_scenes_and_dates(world: LoopbackServer, tmp_path: Path) -> None:
    scenes, _ = find_ee_scenes(region(world, tmp_path, orbit_direction=None, min_coverage=0.05))
    ids = {s.scene_id for s in scenes}
    assert ids == {PORT_ID, "S1B_IW_GRDH_1SDV_20171212_ASC", "S1A_IW_GRDH_1SDV_20171214_SLIVER"}
    assert {s.sensor for s in scenes} == {"Sentinel-1A", "Sentinel-1B"}
    best, _ = find_ee_scenes(region(world, tmp_path, orbit_direction=None, min_coverage=0.05, max_scenes=1))
    assert [s.scene_id for s in best] == [PORT_ID]  # full coverage first, then earliest
    raw = region(world, tmp_path).model_dump()
    raw.update(years=None, dates={"start": "2018-01-01", "end": "2018-01-31"})
    later, _ = find_ee_scenes(RegionConfig.model_validate(raw))
    assert [s.scene_id for s in later] == ["S1A_IW_GRDH_1SDV_20180101_NEXTYEAR"]


def test_missing_project_is_a_config_error(
    world: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EE_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    raw = region(world, tmp_path).model_dump()
    raw["earthengine"]["project"] = None
    with pytest.raises(ConfigError, match=r"set EE_PROJECT or earthengine\.project"):
        find_ee_scenes(RegionConfig.model_validate(raw))


def _reference(tile: Path, scene: Any, window: Window) -> np.ndarray:
    """(2, H, W) expected: the source pixel under each chip pixel centre (VV, VV - 7), NaN off the data."""
    geo = scene_geo(scene)
    rows, cols = np.mgrid[0 : window.out_height, 0 : window.out_width]
    sy, sx = window.height / window.out_height, window.width / window.out_width
    x, y = geo.pixel_to_native(window.row_off + (rows + 0.5) * sy, window.col_off + (cols + 0.5) * sx)
    with rasterio.open(tile) as ds:
        data = ds.read(1)
        inv = ~ds.transform
        c = np.floor(inv.a * x + inv.b * y + inv.c).astype(int)
        r = np.floor(inv.d * x + inv.e * y + inv.f).astype(int)
        inside = (r >= 0) & (r < ds.height) & (c >= 0) & (c < ds.width)
        vv = np.full(rows.shape, np.nan, dtype=np.float32)
        vv[inside] = data[r[inside], c[inside]]
        vv[vv == ds.nodata] = np.nan
    return np.stack([vv, vv - 7.0])


def test_reader_returns_the_source_pixels_on_the_chip_grid(world: LoopbackServer, tmp_path: Path) -> None:
    from tests.conftest import PORT_TILE

    (scene,), _ = find_ee_scenes(region(world, tmp_path, pixel_size_m=20))
    reader = EarthEngineWindowReader(scene.bands[0].settings)  # type: ignore[attr-defined]
    windows = [Window(0, 0, 32, 32, 32, 32), Window(40, 50, 32, 32, 32, 32), Window(64, 64, 64, 64, 32, 32)]
    got = reader.read_many(scene, windows)
    for w, arr in zip(windows[:2], got[:2], strict=True):
        assert arr.shape == (2, 32, 32) and arr.dtype == np.float32
        np.testing.assert_array_equal(arr, _reference(PORT_TILE, scene, w))
    assert got[2].shape == (2, 32, 32)  # a 64 px window read at 32 px: Earth Engine resamples
    calls = pixel_requests(world)
    assert len(calls) == 3  # one request per chip, both polarisations in it
    assert all(r.body is not None and '"VH"' in str(r.body["expression"]).replace("'", '"') for r in calls)
    assert reader.drain_counters()["ee_requests"] == 3


def test_masked_pixels_are_nan_not_zero(world: LoopbackServer, tmp_path: Path) -> None:
    (scene,), _ = find_ee_scenes(region(world, tmp_path, pixel_size_m=20))
    # a window reaching west past the footprint of the image: Earth Engine has no data there
    geo = scene_geo(scene)
    far = Window(-60, 10, 32, 32, 32, 32)
    arr = EarthEngineWindowReader(scene.bands[0].settings).read_many(scene, [far])[0]  # type: ignore[attr-defined]
    lon, _ = geo.pixel_to_lonlat(np.array([10.0]), np.array([-60.0]))
    assert lon[0] < 4.7825  # the window's west edge lies outside the tile
    assert np.isnan(arr).any() and not (arr == 0).any()


def test_read_chips_stage_prefetches_and_counts(world: LoopbackServer, tmp_path: Path) -> None:
    from triplet_builder.record import ChipRecord, chip_id_for
    from triplet_builder.tiling import plan_windows

    (scene,), _ = find_ee_scenes(region(world, tmp_path, pixel_size_m=20))
    windows = plan_windows(scene.width, scene.height, size=32, stride=32, native_pixel_m=20.0)
    recs = [ChipRecord(chip_id_for(scene.scene_id, w), scene, w) for w in windows]
    stats = Stats()
    stage = ReadChips(max_nodata_fraction=0.5, prefetch=8)
    out = list(stage.run(recs, stats))
    stage.close()
    assert len(out) == len(windows)
    assert all(r.db is not None and r.db.shape == (2, 32, 32) for r in out)
    st = stats["tile"]
    assert st.seen == len(windows) and st.extra["ee_requests"] == len(windows)
    # rerun: every window from the cache, zero requests
    n = len(pixel_requests(world))
    stats2 = Stats()
    list(ReadChips(prefetch=8).run([ChipRecord(r.chip_id, scene, r.window) for r in recs], stats2))
    assert len(pixel_requests(world)) == n
    assert stats2["tile"].extra == {"ee_cache_hits": len(windows)}


def test_read_chips_requests_no_window_the_georeference_stage_would_reject(
    world: LoopbackServer, tmp_path: Path
) -> None:
    """Cheap checks before paid work: with the georeference stage's `locate` as its guard, the tile stage
    sends no pixel request for a chip straddling blocks of different splits; it rejects it unread, with
    the georeference stage's reason and detail, and reads every other window as before."""
    from triplet_builder.record import ChipRecord, chip_id_for
    from triplet_builder.stages.georef import Georeference
    from triplet_builder.tiling import plan_windows

    (scene,), _ = find_ee_scenes(region(world, tmp_path, pixel_size_m=20))
    windows = plan_windows(scene.width, scene.height, size=32, stride=32, native_pixel_m=20.0)
    georef = Georeference(
        block_km=2.0, validation=0.3, test=0.3, salt="guard"
    )  # 640 m chips: 18 of 42 straddle
    expected = {}
    for w in windows:  # the stage's own answer, window by window, on records of their own
        rec = ChipRecord(chip_id_for(scene.scene_id, w), scene, w)
        expected[rec.chip_id] = georef.locate(rec)
    n_straddling = sum(v is not None for v in expected.values())
    assert 0 < n_straddling < len(windows) and all(
        v is None or v[0] == "split_guard" for v in expected.values()
    )
    before = len(pixel_requests(world))
    stats = Stats()
    stage = ReadChips(max_nodata_fraction=0.5, prefetch=8, guard=georef.locate)
    out = list(stage.run([ChipRecord(chip_id_for(scene.scene_id, w), scene, w) for w in windows], stats))
    stage.close()
    assert len(pixel_requests(world)) - before == len(windows) - n_straddling
    assert stats["tile"].extra["ee_requests"] == len(windows) - n_straddling
    for r in out:
        why = expected[r.chip_id]
        if why is None:
            assert not r.rejected and r.db is not None and r.split is not None
        else:
            assert (r.reject_stage, r.reject_reason, r.reject_detail) == ("tile", *why) and r.db is None
            assert r.georef is not None  # the footprint is known: the rejects table keeps its geometry
    assert stats["tile"].rejected == {"split_guard": n_straddling}


def test_scene_ref_pickles_with_its_settings(world: LoopbackServer, tmp_path: Path) -> None:
    (scene,), _ = find_ee_scenes(region(world, tmp_path))
    clone = pickle.loads(pickle.dumps(scene))
    assert clone == scene and hash(clone) == hash(scene)
    band, clone_band = scene.bands[0], clone.bands[0]
    assert isinstance(band, EarthEngineBandRef) and isinstance(clone_band, EarthEngineBandRef)
    assert clone_band.settings == band.settings


def test_search_retries_a_transient_error(tmp_path: Path) -> None:
    rasters, catalogue = s1_world(tmp_path)
    with serve(EEHandler, **ee_server_attrs(rasters, catalogue, list_faults=["503"])) as srv:
        scenes, failures = find_ee_scenes(region(srv, tmp_path))
        statuses = [r.status for r in request_log(srv) if r.kind == "listAssets"]
    assert [s.scene_id for s in scenes] == [PORT_ID] and failures == []
    assert statuses == [503, 200]


def test_search_gives_up_as_a_failure_not_a_crash(tmp_path: Path) -> None:
    rasters, catalogue = s1_world(tmp_path)
    with serve(EEHandler, **ee_server_attrs(rasters, catalogue, list_faults=["503"] * 10)) as srv:
        cfg = region(srv, tmp_path)
        raw = cfg.model_dump()
        raw["earthengine"]["max_retries"] = 1
        scenes, failures = find_ee_scenes(RegionConfig.model_validate(raw))
    assert scenes == []
    assert [f.reason for f in failures] == ["search_failed"]
    assert "listImages" in failures[0].message and "\n" not in failures[0].message


def test_the_search_asks_the_server_for_what_it_keeps(world: LoopbackServer, tmp_path: Path) -> None:
    """The listAssets requests carry the filters the server applies (dates, region, mode, pass) and ask
    for the FULL view, explicitly or by leaving it unspecified (the BASIC one has no properties to check
    polarisations with), paged."""
    discover_scenes(region(world, tmp_path))
    lists = [r for r in request_log(world) if r.kind == "listAssets"]
    assert len(lists) >= 2 and all(r.status == 200 for r in lists)  # page_size 2: more than one page
    first = lists[0].body
    assert first is not None and first.get("view", "FULL") in ("FULL", "EARTH_ENGINE_ASSET_VIEW_UNSPECIFIED")
    clauses = first["filter"].split(" AND ")
    assert any(c.startswith("startTime >= ") for c in clauses) and any(
        c.startswith("endTime < ") for c in clauses
    )
    assert any(c.startswith("intersects(") for c in clauses)
    assert 'properties.instrumentMode="IW"' in clauses
    assert 'properties.orbitProperties_pass="DESCENDING"' in clauses
    assert all(r.body is not None and r.body.get("pageToken") for r in lists[1:])
