"""The built-in `osm` stage: found by name, its config checked in one line when the region file loads, one
Overpass query per batch (cached across builds), `missing: skip` and `error`, the .osm.pbf path giving the
same sections as the Overpass path, the attribution and card lines, and a small build of the demo region
against the loopback Overpass API with the section read back from the rows."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import Geod

from pipelines.executor import plan
from pipelines.stages import TaskFailed, TaskSpec, run_task
from schemas.vocabulary import OSM_FEATURES
from tests.conftest import ROOT
from tests.servers import serve
from tests.servers.overpass import SNAPSHOT, OsmFixture, OverpassHandler, overpass_attrs
from tests.virtual_scene import virtual_scene
from triplet_builder.config import ConfigError, load_region
from triplet_builder.geo import scene_geo
from triplet_builder.record import (
    ChipRecord,
    Window,
    chip_id_for,
)
from triplet_builder.sources.osm_pbf import PbfError
from triplet_builder.stages.assemble import stage_names
from triplet_builder.stages.base import Stats
from triplet_builder.stages.georef import Georeference
from triplet_builder.stages.osm import Osm, OsmConfig
from triplet_builder.stages.plugins import load_stage_class
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card_sections import osm_section

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
GEOD = Geod(ellps="WGS84")
# a virtual EPSG:4326 scene (no file): 0.0001 degree pixels from (4.40 E, 43.50 N); chips of 100 px are
# 0.01 degree squares
SCENE = virtual_scene(
    uri="virtual",
    acquired=datetime(2024, 1, 1, tzinfo=timezone.utc),
    acquired_source="declared",
    crs="EPSG:4326",
    width=1000,
    height=1000,
    pixel_size_m=10.0,
    transform=(0.0001, 0.0, 4.40, 0.0, -0.0001, 43.50),
)


def records(cols: list[int]) -> list[ChipRecord]:
    """Georeferenced chips of the top row (100 px windows at these column offsets), with a fact sheet."""
    out = []
    geo = Georeference(block_km=1000.0)  # one block: no split guard rejects here
    for c in cols:
        r = geo.process(ChipRecord(f"chip{c}", SCENE, Window(c, 0, 100, 100, 100, 100)))
        assert not r.rejected
        r.facts = {}
        out.append(r)
    return out


def fixture() -> OsmFixture:
    fx = OsmFixture()
    # a north-south road through the first chip (4.40..4.41 E), at x = 1/2, from its top to the middle
    fx.way(1, [(4.405, 43.50), (4.405, 43.495)], {"highway": "primary", "name": "D570"})
    fx.node(2, 4.415, 43.495, man_made="storage_tank")  # the second chip's centre
    fx.way(
        3, [(4.40, 43.49), (4.43, 43.49), (4.43, 43.50), (4.40, 43.50)], {"landuse": "farmland"}, closed=True
    )
    return fx


def stage(tmp_path: Path, area: list[float] | None = None, **config: Any) -> Osm:
    over: dict[str, Any] = {"output.dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    if area is not None:
        over["area.bbox"] = area
    return Osm(OsmConfig(**config), load_region(DEMO, over))


def overpass(url: str, **kw: Any) -> dict[str, Any]:
    return {"endpoint": url + "/api", "min_interval_s": 0.0, "backoff_s": 0.0, "max_backoff_s": 0.0, **kw}


def run(st: Osm, recs: list[ChipRecord]) -> Stats:
    stats = Stats()
    list(st.run(recs, stats))
    st.close()
    return stats


# ------------------------------------------------------------------------------------ found, configured
def test_osm_is_a_builtin_stage() -> None:
    assert load_stage_class("osm") is Osm
    names = stage_names([type("E", (), {"name": "osm", "after": None})()])
    assert names.index("osm") == names.index("text") - 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"features": ["road", "harbor"]},
            "stages[0].config.features: unknown feature(s) 'harbor': name some of port, pier",
        ),
        ({"features": ["road", "road"]}, "stages[0].config.features: a feature is listed twice"),
        ({"source": "pbf"}, "stages[0].config: source pbf needs path"),
        ({"source": "pbf", "path": "nowhere.osm.pbf"}, "stages[0].config: nowhere.osm.pbf not found"),
        (
            {"endpoint": "overpass-api.de/api"},
            "stages[0].config.endpoint: 'overpass-api.de/api' is not an http(s) URL",
        ),
        ({"missing": "ignore"}, "stages[0].config.missing: Input should be 'error' or 'skip'"),
        (
            {"min_interval_s": -1},
            "stages[0].config.min_interval_s: Input should be greater than or equal to 0",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_region(DEMO, {"output.dir": str(tmp_path), "stages": [{"name": "osm", "config": config}]})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_extract_without_a_bounding_box_is_refused(tmp_path: Path) -> None:
    pbf = fixture().write_pbf(tmp_path / "nobox.osm.pbf", bounds=None)
    with pytest.raises(ConfigError, match=r"stages\[0\]\.config: nobox\.osm\.pbf states no bounding box"):
        load_region(
            DEMO,
            {
                "output.dir": str(tmp_path),
                "stages": [{"name": "osm", "config": {"source": "pbf", "path": str(pbf)}}],
            },
        )


def test_features_keep_the_vocabulary_order() -> None:
    assert OsmConfig(features=["wind turbine", "road"]).features == ["road", "wind turbine"]
    assert OsmConfig().features == list(OSM_FEATURES)


# ------------------------------------------------------------------------------------------ Overpass
def test_one_query_per_batch_sections_and_the_cache(tmp_path: Path) -> None:
    with serve(OverpassHandler, **overpass_attrs(fixture())) as srv:
        recs = records([0, 100, 500])
        stats = run(stage(tmp_path, **overpass(srv.url)), recs)
        assert len(srv.log) == 1  # three chips, one query over their joint box
        s, w, n, e = (float(v) for v in srv.log[0].query.split("(")[-1].split(")")[0].split(","))
        assert (w, s, e, n) == pytest.approx((4.40, 43.49, 4.46, 43.50), abs=2e-5)
        again = records([0, 100, 500])
        run(stage(tmp_path, **overpass(srv.url)), again)  # a second build with the same cache
        assert len(srv.log) == 1
    first, second, far = (r.facts["ext"]["osm"] for r in recs)  # type: ignore[index]
    assert [r.facts for r in again] == [r.facts for r in recs]
    assert first["snapshot"] == SNAPSHOT and first["source"] == "overpass"
    road = first["features"]["road"]
    assert (
        road["cells"] == [2, 5]
        and road["names"] == ["D570"]
        and road["length_m"] == pytest.approx(556.0, rel=5e-3)
    )
    assert first["features"]["farmland"]["cells"] == list(range(1, 10))
    assert second["features"]["storage tank"]["cells"] == [5] and "road" not in second["features"]
    assert far["features"] == {} and far["queried"] == list(OSM_FEATURES) and far["built_up_fraction"] == 0.0
    extra = stats["osm"].extra
    assert extra["requests"] == 1 and extra["queries"] == 1 and extra[f"snapshot {SNAPSHOT}"] == 3


def test_missing_skip_leaves_chips_without_a_section_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(OverpassHandler, **overpass_attrs(fixture(), faults=["503"] * 10)) as srv:
        st = stage(tmp_path, **overpass(srv.url, max_retries=1, missing="skip"))
        st.batch = 2
        recs = records([0, 100, 200, 300])
        with caplog.at_level(logging.WARNING, logger="triplet_builder.stages.osm"):
            stats = run(st, recs)
    assert len(srv.log) == 4  # two batches, two attempts each
    assert all("osm" not in (r.facts or {}).get("ext", {}) for r in recs)
    assert stats["osm"].extra["chips_without_osm"] == 4 and stats["osm"].kept == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "missing: skip" in warnings[0].getMessage()


def test_missing_error_stops(tmp_path: Path) -> None:
    from triplet_builder.sources.overpass import OverpassError

    with serve(OverpassHandler, **overpass_attrs(fixture(), faults=["504"] * 3)) as srv:
        with pytest.raises(OverpassError, match="failed 2 time"):
            run(stage(tmp_path, **overpass(srv.url, max_retries=1)), records([0]))


# --------------------------------------------------------------------------------------------- .osm.pbf
def test_pbf_stage_gives_the_overpass_sections(tmp_path: Path) -> None:
    pbf = fixture().write_pbf(tmp_path / "x.osm.pbf", bounds=(4.35, 43.40, 4.55, 43.55))
    via_pbf = records([0, 100, 500])
    stats = run(stage(tmp_path, source="pbf", path=str(pbf)), via_pbf)
    with serve(OverpassHandler, **overpass_attrs(fixture())) as srv:
        via_overpass = records([0, 100, 500])
        run(stage(tmp_path, **overpass(srv.url)), via_overpass)
    for a, b in zip(via_pbf, via_overpass, strict=True):
        sa, sb = a.facts["ext"]["osm"], b.facts["ext"]["osm"]  # type: ignore[index]
        assert sa["source"] == "pbf" and {**sa, "source": "-"} == {**sb, "source": "-"}
    assert stats["osm"].extra[f"snapshot {SNAPSHOT}"] == 3


def test_pbf_chips_beyond_the_region_box_keep_their_elements(tmp_path: Path) -> None:
    """Items are loaded over the region's box plus a margin; chips reaching further widen it."""
    pbf = fixture().write_pbf(tmp_path / "x.osm.pbf", bounds=(4.35, 43.40, 4.55, 43.55))
    recs = records([0])  # 4.40..4.41 E: 0.3 degree west of the region below
    run(stage(tmp_path, area=[4.7, 43.3, 4.95, 43.7], source="pbf", path=str(pbf)), recs)
    assert recs[0].facts["ext"]["osm"]["features"]["road"]["count"] == 1  # type: ignore[index]


@pytest.mark.parametrize("missing", ["skip", "error"])
def test_pbf_chip_outside_the_extract(tmp_path: Path, missing: str) -> None:
    pbf = fixture().write_pbf(tmp_path / "small.osm.pbf", bounds=(4.35, 43.40, 4.45, 43.55))
    st = stage(tmp_path, source="pbf", path=str(pbf), missing=missing)
    recs = records([0, 500])  # the second chip (4.45..4.46 E) is outside
    if missing == "error":
        with pytest.raises(PbfError, match=r"chip chip500 lies outside the bounding box of small\.osm\.pbf"):
            run(st, recs)
        return
    stats = run(st, recs)
    assert "osm" in recs[0].facts["ext"] and "ext" not in recs[1].facts  # type: ignore[index,operator]
    assert stats["osm"].extra["chips_without_osm"] == 1


# ---------------------------------------------------------------------------------- attribution, card
def test_attribution_and_card_name_the_snapshots_used(tmp_path: Path) -> None:
    cfg = load_region(
        DEMO, {"output.dir": str(tmp_path), "stages": [{"name": "osm", "config": {"features": ["road"]}}]}
    )
    stages = {
        "osm": {"extra": {f"snapshot {SNAPSHOT}": 7, "snapshot unknown": 1, "requests": 2, "cache_hits": 1}}
    }
    lines = [a for a in attributions(cfg, [], stages) if "OpenStreetMap" in a]
    assert lines == [
        "© OpenStreetMap contributors: OpenStreetMap data from the Overpass API https://overpass-api.de/api, "
        "licence ODbL 1.0 (https://opendatacommons.org/licenses/odbl/1-0/); snapshot(s): "
        f"{SNAPSHOT} (7 chip(s)), not stated by the source (1 chip(s))"
    ]
    card = "\n".join(osm_section({"config": cfg.model_dump(mode="json"), "stages": stages}))
    assert (
        "## OpenStreetMap" in card and f"{SNAPSHOT}: 7 chip(s)" in card and "Features queried: road." in card
    )
    assert "Overpass requests: 2 (0 retries), answers reused from the cache: 1." in card
    no_osm = load_region(DEMO, {"output.dir": str(tmp_path), "stages": []})
    assert not any("OpenStreetMap" in a for a in attributions(no_osm, [], stages))
    assert osm_section({"config": no_osm.model_dump(mode="json")}) == []


# ------------------------------------------------------------------------------------------- the demo
def test_demo_build_with_the_osm_stage(tmp_path: Path) -> None:
    base = load_region(DEMO, {"output.dir": str(tmp_path / "probe")})
    task = plan(base).tasks[1]
    windows = task.windows[:4]
    geo = scene_geo(task.scene)
    lon, lat = geo.pixel_to_lonlat(
        np.array([windows[0].row_off + windows[0].height * 0.5]),
        np.array([windows[0].col_off + windows[0].width * 0.25]),
    )
    fx = OsmFixture()
    # a north-south road through the first chip at a quarter of its width, 0.1 degree long
    fx.way(
        1,
        [(float(lon[0]), float(lat[0]) - 0.05), (float(lon[0]), float(lat[0]) + 0.05)],
        {"highway": "primary"},
    )
    fx.way(
        2, [(4.40, 43.30), (4.95, 43.30), (4.95, 43.70), (4.40, 43.70)], {"landuse": "farmland"}, closed=True
    )
    with serve(OverpassHandler, **overpass_attrs(fx)) as srv:
        stages = [{"name": "osm", "config": overpass(srv.url, features=["road", "farmland", "building"])}]
        cfg = load_region(
            DEMO,
            {"output.dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "stages": stages},
        )
        result = run_task(TaskSpec(0, task.scene, windows), cfg)
    assert len(srv.log) == 1 and result["stats"]["osm"]["extra"]["requests"] == 1
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert rows
    for row in rows:
        sec = json.loads(row["facts"])["ext"]["osm"]
        fp = shapely.from_wkb(row["geometry"])
        assert sec["queried"] == ["road", "building", "farmland"] and sec["snapshot"] == SNAPSHOT
        assert sec["features"]["farmland"]["cells"] == list(range(1, 10))  # it covers every chip
        # ... so its area there is the footprint's geodesic area
        assert sec["features"]["farmland"]["area_m2"] == pytest.approx(
            abs(GEOD.geometry_area_perimeter(fp)[0]), rel=1e-6
        )
        assert sec["built_up_fraction"] == 0.0
    first = next(r for r in rows if r["chip_id"] == chip_id_for(task.scene.scene_id, windows[0]))
    road = json.loads(first["facts"])["ext"]["osm"]["features"]["road"]
    assert road["cells"] == [1, 4, 7] and road["count"] == 1


def test_task_failure_names_the_endpoint(tmp_path: Path) -> None:
    """missing: error in a build: the task fails with the stage's one line (no traceback in the message)."""
    base = load_region(DEMO, {"output.dir": str(tmp_path / "probe")})
    task = plan(base).tasks[1]
    with serve(OverpassHandler, **overpass_attrs(fixture(), faults=["503"] * 5)) as srv:
        stages = [{"name": "osm", "config": overpass(srv.url, max_retries=0)}]
        cfg = load_region(
            DEMO, {"output.dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "c"), "stages": stages}
        )
        with pytest.raises(TaskFailed) as e:
            run_task(TaskSpec(0, task.scene, task.windows[:2]), cfg)
    assert f"{srv.url}/api/interpreter failed 1 time(s)" in str(e.value) and "\n" not in str(e.value)
