"""End to end: the bundled demo through the real CLI on a Dask LocalCluster, read back by pyarrow,
geopandas and `datasets`; determinism; resume; and every bad input ends in one line, non-zero, no traceback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from schemas import SCHEMA_VERSION, json_schema, triplet_schema
from tests.conftest import OPERA, PORT_TILE, ROOT

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def region_file(tmp_path: Path, name: str = "region.yaml", **changes: Any) -> Path:
    """A copy of the demo region with absolute paths and the given changes (dotted keys; None removes)."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(tmp_path / "out")
    raw["workers"] = 2
    for k, v in changes.items():
        cur = raw
        *parents, leaf = k.split(".")
        for p in parents:
            cur = cur.setdefault(p, {})
        if v is None:
            cur.pop(leaf, None)
        else:
            cur[leaf] = v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


def digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("demo")
    r = cli("build", str(region_file(tmp)), "--no-progress")
    return tmp / "out", r


def test_demo_builds_and_summarises(demo_build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, r = demo_build
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "chip(s) kept" in r.stdout and "skipped S1A__IW___A_20150309T173017" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    c = m["counts"]
    assert c["scenes"] == 2 and c["chips_kept"] > 40
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"]  # nothing lost
    assert m["synthetic_embeddings"] is True and m["schema_version"] == SCHEMA_VERSION
    # the demo lists the land_cover and osm stages (no bundled data: missing: skip, no section)
    stages = (
        "tile",
        "georeference",
        "embed",
        "screen",
        "facts",
        "land_cover",
        "osm",
        "text",
        "filter",
        "write",
    )
    assert tuple(m["stage_order"]) == stages and set(m["stages"]) == set(stages)
    assert (
        m["stages"]["land_cover"]["extra"]["chips_skipped_missing_map"] == m["stages"]["land_cover"]["seen"]
    )
    assert m["stages"]["osm"]["extra"]["chips_without_osm"] == m["stages"]["osm"]["seen"] > 0
    card = (out / "README.md").read_text()
    assert (
        "The AlphaEarth Foundations Satellite Embedding dataset is produced by Google and Google DeepMind."
        in card
    )
    assert "SYNTHETIC" in card


def test_demo_states_the_derived_gamma0_and_never_sigma0(demo_build: tuple[Path, Any]) -> None:
    """The demo region declares no convention: the pyroSAR `_norm` names give gamma0 RTC, which rows, fact
    sheets, manifest and text say; no caption or answer says sigma0, and the thresholds are gamma0's."""
    out, _ = demo_build
    m = json.loads((out / "manifest.json").read_text())
    assert {(s["backscatter"], s["backscatter_source"]) for s in m["scenes"]} == {("gamma0", "filename")}
    rows = pq.read_table(out / "data", columns=["backscatter", "facts", "caption", "qa"]).to_pylist()
    assert rows and {r["backscatter"] for r in rows} == {"gamma0"}
    for r in rows:
        facts = json.loads(r["facts"])
        assert facts["acquisition"]["backscatter"] == "gamma0"
        assert facts["acquisition"]["backscatter_source"] == "filename"
        s = facts["surface"]
        assert (s["water_threshold_db"], s["water_threshold_source"]) == (-17.0, "table:gamma0/co-pol")
        assert (s["bright_threshold_db"], s["bright_threshold_source"]) == (1.0, "table:gamma0/co-pol")
        text = json.dumps([r["caption"], r["qa"]])
        assert not re.search(r"sigma|σ", text, re.I), text
    assert any("gamma0" in r["caption"] for r in rows)
    card = (out / "README.md").read_text()
    assert "Backscatter convention: gamma0 (filename) for 2 scene(s)" in card


def test_every_chip_is_in_the_shards_or_the_rejects(demo_build: tuple[Path, Any]) -> None:
    out, _ = demo_build
    m = json.loads((out / "manifest.json").read_text())
    kept = pq.read_table(out / "data", columns=["chip_id"]).column("chip_id").to_pylist()
    rej_files = list((out / "rejects").glob("*.parquet"))
    rejected = pq.read_table(rej_files, columns=["chip_id", "reason"]).to_pylist() if rej_files else []
    assert len(kept) == m["counts"]["chips_kept"]
    assert len(rejected) == m["counts"]["chips_rejected"]
    assert len(set(kept) | {r["chip_id"] for r in rejected}) == m["counts"]["windows"]
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    assert reasons == m["counts"]["rejected_by_reason"]


def test_shards_read_with_pyarrow_against_the_schema(demo_build: tuple[Path, Any]) -> None:
    out, _ = demo_build
    files = sorted((out / "data").glob("*.parquet"))
    assert files
    expected = triplet_schema()
    for f in files:
        schema = pq.read_schema(f)
        assert schema.names == expected.names
        assert [fld.type for fld in schema] == [fld.type for fld in expected]
        assert json.loads(schema.metadata[b"geo"])["version"] == "1.1.0"
    t = pq.read_table(files[0])
    row = t.slice(0, 1).to_pylist()[0]
    facts = json.loads(row["facts"])
    import jsonschema

    jsonschema.validate(facts, json_schema("facts"))
    assert len(row["aef_codes"]) == 16 * 16 and len(row["aef_codes"][0]) == 64
    assert row["aef_synthetic"] is True and row["aef_year"] == 2017
    assert row["split"] in {"train", "validation", "test"} and row["caption"]
    assert any(q["task"] == "counting" for q in row["qa"])
    assert row["messages"][0]["role"] == "user" and row["messages"][1]["content"] == row["caption"]
    codes = np.array(row["aef_codes"], dtype=np.int8)[np.array(row["aef_valid"])]
    if codes.size:
        v = np.sign(codes) * (codes.astype(np.float32) / 127.5) ** 2
        norms = np.linalg.norm(v, axis=1)
        assert ((norms > 0.98) & (norms < 1.02)).all()


def test_shards_read_with_geopandas(demo_build: tuple[Path, Any]) -> None:
    import geopandas as gpd

    out, _ = demo_build
    gdf = gpd.read_parquet(out / "data")
    assert gdf.crs is not None and gdf.crs.equals("OGC:CRS84")
    b = gdf.total_bounds
    assert 4.4 < b[0] < b[2] < 4.95 and 43.3 < b[1] < b[3] < 43.7  # the Rhone delta
    assert gdf.geometry.is_valid.all()
    centre = gdf.geometry.centroid
    assert np.allclose(centre.x, gdf["centre_lon"], atol=0.002) and np.allclose(
        centre.y, gdf["centre_lat"], atol=0.002
    )


def test_shards_load_with_datasets(demo_build: tuple[Path, Any]) -> None:
    import datasets

    out, _ = demo_build
    splits = {p.name.split("-")[0] for p in (out / "data").glob("*.parquet")}
    ds = datasets.load_dataset(
        "parquet", data_files={s: str(out / "data" / f"{s}-*.parquet") for s in splits}
    )
    train = ds["train"]
    img = train[0]["image"]
    assert img.size == (64, 64) and img.mode == "LA"
    assert train.features["image"].__class__.__name__ == "Image"


def test_splits_are_spatially_blocked(demo_build: tuple[Path, Any]) -> None:
    from triplet_builder.grid import grid_cell

    out, _ = demo_build
    km = json.loads((out / "manifest.json").read_text())["config"]["split"]["block_km"]
    t = pq.read_table(out / "data", columns=["split", "centre_lon", "centre_lat"]).to_pylist()
    blocks: dict[str, set[str]] = {}
    for r in t:
        blocks.setdefault(grid_cell(r["centre_lon"], r["centre_lat"], km), set()).add(r["split"])
    assert all(len(s) == 1 for s in blocks.values())  # a block never straddles splits
    assert len({r["split"] for r in t}) >= 2


def test_same_inputs_same_shards_and_rerun_resumes(demo_build: tuple[Path, Any], tmp_path: Path) -> None:
    out, _ = demo_build
    r = cli("build", str(region_file(tmp_path)), "--no-progress", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert digest(tmp_path / "out") == digest(out)  # identical bytes, whatever the worker count
    before = digest(tmp_path / "out")
    r2 = cli("build", str(region_file(tmp_path)), "--no-progress")
    assert r2.returncode == 0 and "reused" in r2.stdout
    assert digest(tmp_path / "out") == before
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["counts"]["tasks_reused"] == m["counts"]["tasks"]


def test_other_config_refuses_to_mix_into_an_existing_output(
    demo_build: tuple[Path, Any], tmp_path: Path
) -> None:
    out, _ = demo_build
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    before = digest(target)
    r = cli(
        "build", str(region_file(tmp_path, **{"output.dir": str(target), "chip.stride": 64})), "--no-progress"
    )
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert digest(target) == before  # nothing already written was touched


# -- bad input: one line, non-zero, no traceback, nothing half-written ---------------------------------
def _bad(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors, r.stderr
    for n in needles:
        assert any(n in e for e in errors), (n, r.stderr)


def test_invalid_region_file_reports_every_field(tmp_path: Path) -> None:
    r = cli("build", str(region_file(tmp_path, **{"chip.size": 0, "workers": 0, "bogus": 1})))
    _bad(r, "chip.size", "workers", "bogus")
    assert len(r.stderr.strip().splitlines()) == 1


def test_year_before_2017(tmp_path: Path) -> None:
    _bad(cli("build", str(region_file(tmp_path, years=[2015]))), "years", "2017")


def test_missing_scene_file(tmp_path: Path) -> None:
    _bad(
        cli("build", str(region_file(tmp_path, **{"scenes.paths": [str(tmp_path / "gone.tif")]}))), "gone.tif"
    )


def test_not_a_raster_and_no_georeferencing_do_not_stop_the_good_scene(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(PORT_TILE, scenes)
    (scenes / "S1A__IW___D_20170101T000000_VV_junk_db.tif").write_text("this is not a raster")
    with rasterio.open(
        scenes / "S1A__IW___D_20170202T000000_VV_plain_db.tif",
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="float32",
    ) as ds:
        ds.write(np.zeros((1, 64, 64), np.float32))
    r = cli("build", str(region_file(tmp_path, **{"scenes.paths": [str(scenes / "*.tif")]})), "--no-progress")
    _bad(r, "not a raster", "neither a CRS")
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["counts"]["scenes"] == 1 and m["counts"]["chips_kept"] > 0
    assert {f["reason"] for f in m["failures"]} == {"not_a_raster", "no_georeferencing"}


def test_region_outside_every_scene(tmp_path: Path) -> None:
    _bad(
        cli("build", str(region_file(tmp_path, **{"area.bbox": [10.0, 50.0, 10.5, 50.5]}))),
        "outside every scene",
    )


def test_chip_larger_than_the_scene(tmp_path: Path) -> None:
    _bad(
        cli("build", str(region_file(tmp_path, **{"chip.size": 512, "chip.stride": 512}))),
        "larger than the scene",
    )


def test_region_file_missing(tmp_path: Path) -> None:
    _bad(cli("build", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_opera_scene_end_to_end(tmp_path: Path) -> None:
    """The real OPERA crop (linear gamma0, 65 % NaN) through the whole pipeline: the scale is detected
    from the name, mostly-NaN chips are rejected as nodata, the rest are kept."""
    aef = tmp_path / "aef"
    (aef / "2024").mkdir(parents=True)
    from triplet_builder.embeddings.synthetic import main as synth

    with rasterio.open(OPERA) as src:  # the generator takes dB; the pipeline reads the linear original
        profile = src.profile
        with np.errstate(divide="ignore", invalid="ignore"):
            db = 10 * np.log10(src.read(1))
    with rasterio.open(tmp_path / "opera_db.tif", "w", **profile) as dst:
        dst.write(db.astype(np.float32), 1)
    synth(["--out", str(aef), "--scenes", str(tmp_path / "opera_db.tif"), "--years", "2024", "--seed", "1"])
    r = cli(
        "build",
        str(
            region_file(
                tmp_path,
                **{
                    "scenes.paths": [str(OPERA)],
                    "scenes.scale": "auto",
                    "scenes.backscatter": "auto",
                    "area.bbox": [143.0, -6.5, 144.5, -5.0],
                    "years": [2024],
                    "embeddings.root": str(aef),
                    "chip.pixel_size_m": 30,
                    "split.block_km": 2,
                },
            )
        ),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["scenes"][0]["scale"] == "linear_power" and m["scenes"][0]["backscatter"] == "gamma0"
    assert m["counts"]["rejected_by_reason"].get("nodata", 0) > 0 and m["counts"]["chips_kept"] > 0
    t = pq.read_table(tmp_path / "out" / "data", columns=["valid_fraction", "backscatter"]).to_pylist()
    assert all(r["valid_fraction"] >= 0.5 for r in t) and {r["backscatter"] for r in t} == {"gamma0"}


def test_build_on_an_existing_scheduler(tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        r = cli(
            "build", str(region_file(tmp_path)), "--no-progress", "--scheduler", cluster.scheduler_address
        )
        assert r.returncode == 0, r.stderr
        m = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert m["counts"]["chips_kept"] > 40


def test_a_scene_failing_mid_read_is_recorded_and_leaves_nothing(tmp_path: Path) -> None:
    """A raster that opens but whose later blocks are cut off: its task fails, is recorded in the
    manifest, publishes no shard (its windows go to the rejects as task_failed), and the good scene is
    still built."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(PORT_TILE, scenes)
    bad = scenes / "S1A__IW___D_20171210T054359_VV_truncated_db.tif"
    with rasterio.open(
        bad,
        "w",
        driver="GTiff",
        width=256,
        height=256,
        count=1,
        dtype="float32",
        crs="EPSG:32631",
        transform=from_origin(640000, 4810000, 20, 20),
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
    ) as ds:
        ds.write(np.random.default_rng(0).normal(-10, 3, (1, 256, 256)).astype("float32"))
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size // 2)
    r = cli("build", str(region_file(tmp_path, **{"scenes.paths": [str(scenes / "*.tif")]})), "--no-progress")
    _bad(r, "RasterioIOError", bad.name)
    assert len(r.stderr.strip().splitlines()) == 1
    out = tmp_path / "out"
    m = json.loads((out / "manifest.json").read_text())
    (failure,) = m["failures"]
    assert failure["scene_id"] == bad.stem and m["counts"]["tasks_failed"] == 1
    assert m["counts"]["chips_kept"] > 0
    failed_task = failure["task_id"]
    # no shard and no marker (a rerun runs it again); its windows are in its rejects table as task_failed
    (rejects,) = [f for f in out.rglob("*") if f"-{failed_task:05d}" in f.name]
    assert rejects == out / "rejects" / f"rejects-{failed_task:05d}.parquet"
    reasons = pq.read_table(rejects, columns=["reason"]).column("reason").to_pylist()
    assert reasons and set(reasons) == {"task_failed"}
    assert m["counts"]["rejected_by_reason"]["task_failed"] == len(reasons)
    assert m["counts"]["chips_kept"] + m["counts"]["chips_rejected"] == m["counts"]["windows"]
    assert not list(out.rglob("*.tmp"))
