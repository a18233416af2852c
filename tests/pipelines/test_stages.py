"""Each worker-side stage over a plain iterator (no Dask), and one task run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from pipelines.executor import plan
from pipelines.stages import TaskSpec, build_stages, run_task
from tests.conftest import ROOT
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.record import ChipRecord, chip_id_for
from triplet_builder.stages.assemble import stage_names
from triplet_builder.stages.base import Stats, run_stages
from triplet_builder.stages.embed import anchor_positions
from triplet_builder.stages.filter import Filter
from triplet_builder.stages.georef import split_for
from triplet_builder.stages.screen import Screen

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> RegionConfig:
    return load_region(DEMO, {"output.dir": str(tmp_path_factory.mktemp("stages") / "out")})


@pytest.fixture(scope="module")
def task(cfg: RegionConfig) -> TaskSpec:
    p = plan(cfg)
    assert [s.scene_id for s in p.scenes] == [
        "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db",
        "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db",
    ]
    assert p.skipped[0]["reason"] == "outside_dates"
    return TaskSpec(0, p.tasks[1].scene, p.tasks[1].windows[:12])


@pytest.fixture(scope="module")
def records(cfg: RegionConfig, task: TaskSpec) -> list[ChipRecord]:
    recs = [ChipRecord(chip_id_for(task.scene.scene_id, w), task.scene, w) for w in task.windows]
    stages = [s for s in build_stages(cfg) if s.name not in ("filter", "write")]  # all before the filter
    out = list(run_stages(stages, recs, Stats()))
    for s in stages:
        s.close()
    return out


def test_georeference_footprints_and_splits(records: list[ChipRecord], cfg: RegionConfig) -> None:
    for r in records:
        assert r.georef is not None
        poly = shapely.from_wkb(r.georef.footprint_wkb)
        assert poly.geom_type == "Polygon" and poly.is_valid
        assert len(poly.exterior.coords) == 4 * 8 + 1  # densified edges
        assert poly.contains(shapely.Point(r.georef.centre_lon, r.georef.centre_lat))
        assert r.georef.pixel_size_m == pytest.approx(20.0, abs=0.05)
        assert r.georef.utm_crs == "EPSG:32631" and r.georef.grid_cell.endswith("R")
        s = cfg.split
        if r.reject_reason == "split_guard":  # straddles blocks of different splits: no split
            assert r.split is None
            continue
        assert r.split == split_for(  # all its blocks share one split, that of the centre's block too
            r.georef.centre_lon,
            r.georef.centre_lat,
            block_km=s.block_km,
            validation=s.validation,
            test=s.test,
            salt=s.salt,
        )


def test_split_fractions_follow_the_config() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-10, 35], [30, 60], size=(4000, 2))
    splits = [split_for(x, y, block_km=2, validation=0.1, test=0.2, salt="s") for x, y in pts]
    frac = {k: splits.count(k) / len(splits) for k in ("train", "validation", "test")}
    assert frac["test"] == pytest.approx(0.2, abs=0.03) and frac["validation"] == pytest.approx(0.1, abs=0.03)


def test_embed_anchor_grid(records: list[ChipRecord]) -> None:
    pos = anchor_positions(16)
    assert (
        pos.shape == (256, 2) and pos.min() == pytest.approx(1 / 32) and pos.max() == pytest.approx(31 / 32)
    )
    assert np.allclose(pos[1] - pos[0], [0, 1 / 16])  # row-major: x moves fastest
    for r in records:
        a = r.anchors
        assert a is not None and a.codes.shape == (256, 64) and a.codes.dtype == np.int8
        assert a.year == 2017 and a.synthetic
        poly = shapely.from_wkb(r.georef.footprint_wkb)  # type: ignore[union-attr]
        assert all(poly.contains(shapely.Point(*ll)) for ll in a.lonlat)
        assert (a.codes[~a.valid] == -128).all()
        norms = np.linalg.norm(a.features()[a.valid], axis=1)
        assert ((norms > 0.98) & (norms < 1.02)).all()
    # anchors are north-up: the first row of anchors lies north of the last
    a = records[0].anchors
    assert a is not None and a.lonlat[:16, 1].mean() > a.lonlat[-16:, 1].mean()


def test_screen_and_filter_reject_featureless_inconsistent_and_duplicate(records: list[ChipRecord]) -> None:
    import copy

    good = records[0]
    flat = copy.copy(good)
    flat.chip_id = "flat"
    flat.db = np.full_like(good.db, -12.0)  # type: ignore[arg-type]
    liar = copy.copy(good)
    liar.chip_id = "liar"
    liar.db = good.db + 1.0  # type: ignore[operator]
    liar.qa = [dict(q) for q in good.qa]
    liar.qa[0] = (
        {**liar.qa[0], "answer": str(int(liar.qa[0]["answer"]) + 3)}
        if liar.qa[0]["task"] == "counting"
        else liar.qa[0]
    )
    twin = copy.copy(good)
    twin.chip_id = "twin"
    stats = Stats()
    screened = Screen(min_std_db=0.5).run([good, flat, liar, twin], stats)
    out = {r.chip_id: r for r in Filter().run(screened, stats)}
    assert not out[good.chip_id].rejected
    assert out["flat"].reject_reason == "featureless"
    assert out["liar"].reject_reason == "inconsistent_text" and "count" in (out["liar"].reject_detail or "")
    assert out["twin"].reject_reason == "duplicate" and good.chip_id in (out["twin"].reject_detail or "")
    assert dict(stats["screen"].rejected) == {"featureless": 1, "duplicate": 1}
    assert dict(stats["filter"].rejected) == {"inconsistent_text": 1}


def test_run_task_in_process_writes_shards_and_marker(cfg: RegionConfig, task: TaskSpec) -> None:
    res = run_task(task, cfg)
    out = Path(cfg.output.dir)
    assert res["windows"] == 12
    assert sum(res["written"]["rows"].values()) + res["written"]["rejects"] == 12
    for f in res["written"]["files"]:
        assert (out / f).is_file()
    assert not list(out.rglob("*.tmp"))
    marker = json.loads((out / "_tasks" / "task-00000.json").read_text())
    assert marker["config_hash"] == cfg.config_hash() and marker["stats"]["tile"]["seen"] == 12
    rows = pq.read_table([out / f for f in res["written"]["files"] if f.startswith("data/")]).num_rows
    assert rows == sum(res["written"]["rows"].values())


def test_area_from_a_vector_file_limits_the_windows(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    # a small polygon around Port-Saint-Louis-du-Rhone, in UTM to exercise the reprojection
    area = gpd.GeoDataFrame(geometry=[box(4.80, 43.375, 4.83, 43.395)], crs="EPSG:4326").to_crs("EPSG:32631")
    area.to_file(tmp_path / "area.geojson", driver="GeoJSON")
    cfg_all = load_region(DEMO, {"output.dir": str(tmp_path / "a")})
    cfg_small = load_region(
        DEMO, {"output.dir": str(tmp_path / "b"), "area": {"path": str(tmp_path / "area.geojson")}}
    )
    n_all = sum(len(t.windows) for t in plan(cfg_all).tasks)
    p = plan(cfg_small)
    n_small = sum(len(t.windows) for t in p.tasks)
    assert 0 < n_small < n_all
    assert [s.scene_id for s in p.scenes] == ["S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db"]
    assert p.windows_outside_region > 0


def test_labels_flow_into_facts_and_classification_qa(tmp_path: Path) -> None:
    """xView3-style vessel points inside the port tile become objects, counting and classification QA,
    and the text passes the consistency filter; objects of another acquisition at the same places
    never reach the port scene's facts, and the task counts them."""
    import rasterio

    from tests.conftest import PORT_TILE

    with rasterio.open(PORT_TILE) as ds:
        from pyproj import Transformer

        tr = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        pts = [tr.transform(*ds.xy(r, c)) for r, c in [(20, 20), (24, 30), (100, 150)]]
    port_id = "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db"
    other_id = "S1A_IW_GRDH_1SDV_20171222T054358_20171222T054423_019723_0218C5_1A2B.SAFE"
    lines = ["scene_id,detect_lat,detect_lon,vessel_length_m,is_vessel,is_fishing"]
    lines += [f"{port_id},{lat},{lon},60,true,{str(i == 2).lower()}" for i, (lon, lat) in enumerate(pts)]
    lines += [f"{other_id},{lat},{lon},,false,false" for lon, lat in pts[:2]]  # 12 days later
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    cfg = load_region(
        DEMO, {"output.dir": str(tmp_path / "out"), "facts.labels": {"path": str(tmp_path / "labels.csv")}}
    )
    p = plan(cfg)
    t = next(t for t in p.tasks if "20171210" in t.scene.scene_id)
    res = run_task(t, cfg)
    assert res["stats"]["filter"]["rejected"].get("inconsistent_text", 0) == 0
    rows = pq.read_table(Path(cfg.output.dir) / "data").to_pylist()
    with_objects = [r for r in rows if json.loads(r["facts"])["objects"]]
    assert with_objects, "no chip holds a labelled vessel"
    labels = {o["label"] for r in with_objects for o in json.loads(r["facts"])["objects"]}
    assert labels <= {"vessel", "fishing vessel"} and "vessel" in labels  # no "non-vessel object"
    sheets = [json.loads(r["facts"]) for r in rows]
    assert all(o["class"] == "ship" for s in sheets for o in s["objects"])
    # the port scene is one the file labels: every chip states its ship count, zeros included
    assert all(s["labels"]["classes_labelled"] == ["ship"] for s in sheets)
    assert all(s["labels"]["counts"] == {"ship": len(s["objects"])} for s in sheets)
    assert any(s["labels"]["counts"]["ship"] == 0 for s in sheets)
    names = [s.name for s in build_stages(cfg)]
    assert names[names.index("facts") + 1] == "labels"  # the labels stage, right after facts
    assert "labels" not in stage_names(cfg.stages, labels=False)  # only with a label file
    extra = res["stats"]["labels"]["extra"]
    assert (extra["labels_matched"], extra["labels_unmatched"]) == (3, 2)
    assert extra["labels_in_chips"] + extra["labels_outside_chips"] == 3 and extra["labels_in_chips"] >= 1
    tasks = {q["task"] for r in with_objects for q in r["qa"]}
    assert {"counting", "localization", "detection", "classification"} <= tasks


def test_validate_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(DEMO)], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    # 96 windows on a plain grid, less the 26 flush ones that would share > chip.max_overlap
    assert "2 scene(s), 70 window(s)" in r.stdout and "outside_dates" in r.stdout
    assert "; 26 flush window(s) not laid (> chip.max_overlap)" in r.stdout


def test_an_llm_writer_without_key_or_server_stops_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.executor import build
    from triplet_builder.config import ConfigError, load_region

    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = load_region(
        ROOT / "pipelines/regions/demo.yaml",
        {
            "text.writer": "llm",
            "text.llm.model": "gpt-4o-mini",
            "text.llm.api_key_env": "MY_LLM_KEY",
            "output.dir": str(tmp_path / "out"),
        },
    )
    with pytest.raises(ConfigError, match="MY_LLM_KEY is not set"):
        build(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_datasets_reader_sees_qa_boxes_in_the_stated_frame_on_the_targets(tmp_path: Path) -> None:
    """Rows of the port scene read through `datasets`: every detection / classification question states
    the frame of its boxes (the chip image's pixels), and each answer box, mapped from that frame onto
    the decoded chip, holds a pixel as bright as the target's peak (recomputed from the PNG)."""
    import datasets

    from schemas.codec import decode_chip
    from schemas.frames import box_from_frame, box_to_frame, stated_frame

    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out")})
    p = plan(cfg)
    run_task(TaskSpec(0, p.tasks[1].scene, p.tasks[1].windows), cfg)
    files = sorted(str(f) for f in (tmp_path / "out" / "data").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files={"rows": files}, cache_dir=str(tmp_path / "hf"))["rows"]
    ds = ds.cast_column("image", datasets.Image(decode=False))  # the PNG bytes, decoded below
    n_boxes = 0
    for row in ds:
        facts = json.loads(row["facts"])
        peaks = {tuple(d["bbox"]): d["peak_db"] for d in facts["detections"]["items"]}
        db = decode_chip(row["image"]["bytes"], row["stretch_min_db"], row["stretch_max_db"])[0]  # (H, W)
        step = (row["stretch_max_db"][0] - row["stretch_min_db"][0]) / 255
        for q in row["qa"]:
            if q["task"] != "detection":
                continue
            frame = stated_frame(q["question"])
            assert frame is not None and (frame.width, frame.height) == (row["width"], row["height"])
            if q["answer"] == "None":
                assert not peaks
                continue
            for item in json.loads(q["answer"]):
                box = box_to_frame(box_from_frame(item["bbox_2d"], frame), row["width"], row["height"])
                x1, y1, x2, y2 = box
                assert tuple(box) in peaks
                brightest = float(np.nanmax(db[y1:y2, x1:x2]))
                assert brightest >= min(peaks[tuple(box)], row["stretch_max_db"][0]) - step - 1e-3
                n_boxes += 1
    assert n_boxes >= 5


def test_backscatter_column_holds_the_tile_stage_array_exactly(tmp_path: Path) -> None:
    """output.backscatter_column: the decoded column equals the tile stage's (P, H, W) dB chip of the
    same window, read again here; the PNG saturates on bright targets, the column does not."""
    from schemas.backscatter import decode_backscatter
    from triplet_builder.stages.tile import ReadChips

    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out"), "output.backscatter_column": True})
    p = plan(cfg)
    spec = TaskSpec(0, p.tasks[1].scene, p.tasks[1].windows[:16])
    run_task(spec, cfg)
    rows = pq.read_table(tmp_path / "out" / "data", columns=["chip_id", "backscatter_db", "stretch_max_db"])
    by_id = {r["chip_id"]: r for r in rows.to_pylist()}
    recs = [ChipRecord(chip_id_for(spec.scene.scene_id, w), spec.scene, w) for w in spec.windows]
    above = 0
    for r in ReadChips(max_nodata_fraction=1.0).run(recs, Stats()):
        if r.chip_id not in by_id:
            continue
        arr = decode_backscatter(by_id[r.chip_id]["backscatter_db"])
        assert r.db is not None
        np.testing.assert_array_equal(arr, r.db)
        above += int((arr > by_id[r.chip_id]["stretch_max_db"][0]).sum())
    assert len(by_id) >= 8 and above > 0  # values above the PNG stretch survive in the column
