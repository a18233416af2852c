"""The `land_cover` stage: sections recomputed independently (chip pixel centres from the scene affine,
pyproj to lon/lat, rasterio's index into the fixture tiles), a chip across a tile edge, open sea, the Earth
Engine path (WorldCover and the Dynamic World mode) against the loopback server, config errors, `missing:
skip`, and a build of the demo region with the stage against the loopback range server."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

import pipelines
from schemas import frames
from schemas.vocabulary import DYNAMIC_WORLD_LEGEND, WORLDCOVER_LEGEND
from tests.servers import LoopbackServer, serve
from tests.servers.earthengine import EEHandler, Raster, ee_server_attrs, pixel_requests
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.triplet_builder.sources.worldcover_fixtures import reference_values, write_grid, write_tile
from tests.virtual_scene import virtual_scene
from triplet_builder.config import ConfigError, load_region
from triplet_builder.record import ChipRecord, SceneRef, Window
from triplet_builder.stages import land_cover as lc
from triplet_builder.stages.base import StageStats

DEMO = Path(pipelines.__file__).parent / "regions" / "demo.yaml"
ACQ = datetime(2021, 6, 15, 6, 0, tzinfo=timezone.utc)
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True)
TO_LL = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)


def _scene(lon: float, lat: float, acquired: datetime = ACQ) -> SceneRef:
    """A virtual 20 m scene in UTM 31N whose top-left corner is (lon, lat), snapped to 20 m."""
    x, y = TO_UTM.transform(lon, lat)
    x, y = round(x / 20) * 20.0, round(y / 20) * 20.0
    return virtual_scene(
        scene_id=f"virtual_{lon}_{lat}",
        acquired=acquired,
        crs="EPSG:32631",
        width=200,
        height=200,
        pixel_size_m=20.0,
        transform=(20.0, 0.0, x, 0.0, -20.0, y),
    )


def _records(scene: SceneRef, windows: list[Window]) -> list[ChipRecord]:
    out = [ChipRecord(f"c{i}", scene, w) for i, w in enumerate(windows)]
    for r in out:
        r.facts = {}  # the sheet exists (the facts stage ran); the stage adds ext.land_cover
    return out


def _utm_centres(r: ChipRecord) -> tuple[np.ndarray, np.ndarray]:
    """UTM x, y of the chip's output pixel centres, row-major, from the scene affine alone."""
    w, t = r.window, Affine(*r.scene.transform)  # type: ignore[misc]
    rows, cols = np.mgrid[0 : w.out_height, 0 : w.out_width]
    c = w.col_off + (cols.ravel() + 0.5) * w.width / w.out_width
    rr = w.row_off + (rows.ravel() + 0.5) * w.height / w.out_height
    return t.c + t.a * c, t.f + t.e * rr


def _expected(values: np.ndarray, shape: tuple[int, int], legend: dict[int, str]) -> dict[str, Any]:
    """Shares computed with a Counter, per chip and per cell, without the stage's code."""
    grid = values.reshape(shape)
    cells = frames.cell_index_map(*shape)

    def share(v: np.ndarray) -> dict[str, Any]:
        cnt = Counter(int(x) for x in v.ravel() if int(x) in legend)
        k = sum(cnt.values())
        if k == 0:
            return {"valid_fraction": 0.0, "fractions": {}, "dominant": None}
        top = max(sorted(cnt), key=lambda c: cnt[c])  # most frequent, the lowest value on a tie
        return {
            "valid_fraction": round(k / v.size, 4),
            "fractions": {legend[c]: round(n / k, 4) for c, n in sorted(cnt.items())},
            "dominant": legend[top],
        }

    return {**share(grid), "cells": [{"cell": c, **share(grid[cells == c])} for c in range(1, 10)]}


def _region(tmp_path: Path, **overrides: Any) -> Any:
    return load_region(
        DEMO, {"output.dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), **overrides}
    )


def _run(config: dict[str, Any], region: Any, records: list[ChipRecord]) -> StageStats:
    stage = lc.LandCover(lc.LandCoverConfig(**config), region)
    st = StageStats()
    stage.process_batch(records, st)
    stage.close()
    return st


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[tuple[LoopbackServer, list[Path]]]:
    root = tmp_path / "bucket"
    files = [
        write_tile(root, 2021, "N42E003", 5.98, 43.70, 240, 120, seed=1),
        write_tile(root, 2021, "N42E006", 6.00, 43.70, 180, 120, seed=2),
    ]
    write_grid(root, ["N42E003", "N42E006"])
    with serve(RangeHandler, **range_server_attrs(root)) as srv:
        yield srv, files


WINDOWS = [
    Window(0, 0, 16, 16, 16, 16),  # inside N42E003
    Window(24, 2, 24, 24, 12, 12),  # across 6 E (both tiles), resampled 2:1 onto its own 12 x 12 grid
    Window(90, 10, 30, 30, 30, 30),  # across the fixture tiles' east edge: partly no data
]


def test_sections_match_independent_fractions(
    bucket: tuple[LoopbackServer, list[Path]], tmp_path: Path
) -> None:
    srv, files = bucket
    recs = _records(_scene(5.9905, 43.6995), WINDOWS)
    st = _run({"url": srv.url}, _region(tmp_path), recs)
    for r in recs:
        x, y = _utm_centres(r)
        lon, lat = TO_LL.transform(x, y)
        want = _expected(
            reference_values(files, np.asarray(lon), np.asarray(lat)),
            (r.window.out_height, r.window.out_width),
            dict(WORLDCOVER_LEGEND),
        )
        got = r.facts["ext"]["land_cover"]  # type: ignore[index]
        assert got == {"product": "esa-worldcover", "version": "v200", "year": 2021, "source": "cog", **want}
    sec = [r.facts["ext"]["land_cover"] for r in recs]  # type: ignore[index]
    assert 0 < sec[2]["valid_fraction"] < 0.9 and sec[0]["valid_fraction"] > 0.9
    assert st.extra["chips_map_2021"] == 3 and st.extra["chips_year_gap_0"] == 3
    # 3 windows for 3 chips on 2 tiles (4 chip-tile pairs): chips close together share a window, a mostly
    # empty box between chips far apart is not read
    assert st.extra["source_window_reads"] == 3


def test_open_sea_chip_states_no_class(bucket: tuple[LoopbackServer, list[Path]], tmp_path: Path) -> None:
    srv, _ = bucket
    recs = _records(_scene(4.0, 39.5, ACQ - timedelta(days=3 * 365)), [Window(0, 0, 16, 16, 16, 16)])
    st = _run({"url": srv.url, "year": "nearest"}, _region(tmp_path), recs)
    sec = recs[0].facts["ext"]["land_cover"]  # type: ignore[index]
    assert sec["year"] == 2020 and sec["version"] == "v100"  # 2018 acquisition: the 2020 map is nearest
    assert sec["valid_fraction"] == 0.0 and sec["dominant"] is None and sec["fractions"] == {}
    assert all(c["dominant"] is None and c["valid_fraction"] == 0.0 for c in sec["cells"])
    assert st.extra["chips_without_map_pixels"] == 1 and st.extra["chips_year_gap_2"] == 1


def _ee_settings(srv: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("EE_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("EE_SERVICE_ACCOUNT_KEY", raising=False)
    return {"earthengine": {"project": "test-project", "url": srv.url, "max_retries": 1, "backoff_s": 0.01}}


def test_earthengine_worldcover_gives_the_cog_sections(
    bucket: tuple[LoopbackServer, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, files = bucket
    cog = _records(_scene(5.9905, 43.6995), WINDOWS)
    _run({"url": srv.url}, _region(tmp_path / "a"), cog)
    rasters = {
        "ESA/WorldCover/v200": [Raster(f, ("Map",), datetime(2021, 1, 1, tzinfo=timezone.utc)) for f in files]
    }
    with serve(EEHandler, **ee_server_attrs(rasters)) as ee_srv:
        region = _region(tmp_path / "b", **_ee_settings(ee_srv, tmp_path, monkeypatch))
        ee = _records(_scene(5.9905, 43.6995), WINDOWS)
        st = _run({"source": "earthengine"}, region, ee)
        reqs = pixel_requests(ee_srv)
    for a, b in zip(cog, ee, strict=True):
        want = {**a.facts["ext"]["land_cover"], "source": "earthengine"}  # type: ignore[index]
        assert b.facts["ext"]["land_cover"] == want  # type: ignore[index]
    assert st.extra["ee_requests"] == len(reqs) <= 2  # the batch's pixels in few grids, not one per chip
    grid = reqs[0].body["grid"]  # type: ignore[index]
    assert grid["crsCode"] == "EPSG:4326" and grid["affineTransform"]["scaleX"] == pytest.approx(1 / 12000)


def _dw_image(path: Path, x0: float, y0: float, data: np.ndarray) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint8",
        crs="EPSG:32631", transform=Affine(10, 0, x0, 0, -10, y0), nodata=255,
    ) as ds:  # fmt: skip
        ds.write(data, 1)
    return path


def test_dynamic_world_mode_over_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene(4.60, 43.60)
    x0, y0 = scene.transform[2] - 200, scene.transform[5] + 200  # type: ignore[index]
    rng = np.random.default_rng(3)
    dates = [
        ACQ - timedelta(days=40),
        ACQ - timedelta(days=5),
        ACQ + timedelta(days=3),
        ACQ + timedelta(days=20),
    ]
    images = []
    for i, d in enumerate(dates):
        data = rng.integers(0, 3, size=(120, 120)).astype(np.uint8) + (i % 2)  # few classes: ties happen
        data[20:23, :] = data[70:72, :] = 255  # rows masked in every image: no data in both chips
        images.append((d, _dw_image(tmp_path / f"dw{i}.tif", x0, y0, data)))
    rasters = {"GOOGLE/DYNAMICWORLD/V1": [Raster(p, ("label",), d) for d, p in images]}
    windows = [Window(0, 0, 20, 20, 20, 20), Window(20, 20, 20, 20, 10, 10)]
    with serve(EEHandler, **ee_server_attrs(rasters)) as srv:
        region = _region(tmp_path, **_ee_settings(srv, tmp_path, monkeypatch))
        recs = _records(scene, windows)
        _run({"product": "dynamic-world", "source": "earthengine", "days": 30}, region, recs)
    for r in recs:
        x, y = _utm_centres(r)
        per_image = []
        for _d, p in images[1:]:  # the first is 40 days before: outside the window
            with rasterio.open(p) as ds:
                a = ds.read(1)
                per_image.append(np.array([a[ds.index(u, v)] for u, v in zip(x, y, strict=True)]))
        stack = np.stack(per_image)  # (3, N)
        mode = np.full(stack.shape[1], 255)
        for j in range(stack.shape[1]):
            vals = Counter(int(v) for v in stack[:, j] if v != 255)
            if vals:
                mode[j] = max(sorted(vals), key=lambda c: vals[c])
        want = _expected(mode, (r.window.out_height, r.window.out_width), dict(DYNAMIC_WORLD_LEGEND))
        sec = r.facts["ext"]["land_cover"]  # type: ignore[index]
        assert sec == {
            "product": "dynamic-world",
            "version": None,
            "year": None,
            "date_range": ["2021-05-16", "2021-07-15"],
            "source": "earthengine",
            **want,
        }
        assert 0 < sec["valid_fraction"] < 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"product": "dynamic-world"},
            "stages[0].config: product dynamic-world is read from Earth Engine only",
        ),
        ({"year": 2019}, "stages[0].config.year: Input should be 2020, 2021 or 'nearest'"),
        ({"source": "local", "path": "nowhere/wc.tif"}, "stages[0].config: path wc.tif not found"),
        ({"url": "ftp://x"}, "stages[0].config.url: 'ftp://x' is not an https://"),
        ({"colour": 1}, "stages[0].config.colour: Extra inputs are not permitted"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _region(tmp_path, stages=[{"name": "land_cover", "config": config}])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_skip_logs_one_line_and_writes_no_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lc, "_LOGGED", set())
    cfg = {"source": "local", "path": str(tmp_path / "absent"), "missing": "skip"}
    region = _region(tmp_path, stages=[{"name": "land_cover", "config": cfg}])  # loads: skip allows it
    stage = lc.LandCover(lc.LandCoverConfig(**cfg), region)
    st = StageStats()
    with caplog.at_level(logging.WARNING, logger="triplet_builder.stages.land_cover"):
        for batch in (WINDOWS[:2], WINDOWS[2:]):
            recs = _records(_scene(5.99, 43.6995), batch)
            stage.process_batch(recs, st)
            assert all("ext" not in r.facts for r in recs)  # type: ignore[operator]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "absent not found: download the map from https://esa-worldcover" in lines[0]
    assert st.extra["chips_skipped_missing_map"] == 3
    # missing: error stops with one line saying what is missing and how to get it
    with pytest.raises(lc.MapMissingError, match=r"absent not found.*or set missing: skip"):
        lc.LandCover(lc.LandCoverConfig(**{**cfg, "missing": "error"}), region).process_batch(recs, st)


@pytest.mark.slow
def test_demo_build_with_the_stage(tmp_path: Path) -> None:
    from pipelines.executor import plan
    from pipelines.stages import TaskSpec, run_task
    from triplet_builder.writers.attributions import attributions
    from triplet_builder.writers.card_sections import land_cover_section

    root = tmp_path / "bucket"
    # the demo's two 2017 scenes lie in 4.48..4.86 E, 43.36..43.62 N: ONE small part of tile N42E003
    write_tile(root, 2020, "N42E003", 4.48, 43.62, 4560, 3120, seed=5)
    write_grid(root, ["N42E003"])
    with serve(RangeHandler, **range_server_attrs(root)) as srv:
        stages = [{"name": "land_cover", "after": "facts", "config": {"url": srv.url}}]
        cfg = _region(tmp_path, stages=stages)
        p = plan(cfg)
        task = p.tasks[1]
        result = run_task(TaskSpec(0, task.scene, task.windows[:4]), cfg)
    # the card and the manifest name the map the build used: 2017 scenes -> the 2020 map, 3 years apart
    lines = attributions(cfg, p.scenes)
    assert (
        "© ESA WorldCover project 2020 / Contains modified Copernicus Sentinel data (2020) processed by ESA "
        "WorldCover consortium (CC-BY-4.0; Zanaga, D. et al. (2021)" in "\n".join(lines)
    )
    kept = result["stats"]["facts"]["kept"]
    section = "\n".join(land_cover_section({"stages": {"land_cover": result["stats"]["land_cover"]}}))
    assert f"Maps used: 2020 ({kept} chips)" in section and f"{kept} chips 3 year(s) apart" in section
    assert result["stats"]["land_cover"]["seen"] == result["stats"]["facts"]["kept"] > 0
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert rows
    for row in rows:
        sec = json.loads(row["facts"])["ext"]["land_cover"]
        assert (sec["product"], sec["version"], sec["year"], sec["source"]) == (
            "esa-worldcover",
            "v100",
            2020,
            "cog",
        )
        assert sec["valid_fraction"] > 0.9 and sec["dominant"] in WORLDCOVER_LEGEND.values()
        assert abs(sum(sec["fractions"].values()) - 1) < 1e-3
