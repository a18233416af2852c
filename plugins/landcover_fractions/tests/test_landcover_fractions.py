"""The example plugin: found through its entry point, its config checked when the region file loads, its
fractions recomputed independently (areas of the chip's and cells' outlines over class rectangles, with
shapely), and a region file naming it builds a task whose rows carry the section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import yaml
from landcover_fractions import LandcoverConfig, LandcoverFractions
from pyproj import Transformer
from rasterio.transform import from_origin

from pipelines.executor import plan
from pipelines.stages import TaskSpec, run_task
from triplet_builder.config import ConfigError, RegionConfig, load_region
from triplet_builder.record import ChipRecord, Window, chip_id_for
from triplet_builder.stages.plugins import installed, load_stage_class

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
CLASSES = {10: "tree", 20: "grass"}  # 30 is left unlisted on purpose; 255 is nodata
PX = 0.00005  # land-cover pixel (degrees), ~4 m: finer than the 20 m chip pixels


def test_discovered_through_its_entry_point() -> None:
    assert installed()["landcover_fractions"] == "landcover_fractions.stage:LandcoverFractions"
    assert load_stage_class("landcover_fractions") is LandcoverFractions
    assert load_stage_class("landcover_fractions.stage:LandcoverFractions") is LandcoverFractions


# -- a land-cover raster in EPSG:4326 (the scenes are UTM) with classes in known rectangles -------------
def _utm_outline(
    ds: rasterio.DatasetReader, w: Window, r0: float, r1: float, c0: float, c1: float
) -> shapely.Polygon:
    """Chip pixel rows r0..r1, cols c0..c1 of window w, as a lon/lat polygon (edges densified)."""
    t = ds.transform
    k = w.width / w.out_width  # native pixels per chip pixel
    ring = shapely.box(w.col_off + c0 * k, w.row_off + r0 * k, w.col_off + c1 * k, w.row_off + r1 * k)
    ring = shapely.segmentize(ring, 1.0)
    xy = np.asarray(ring.exterior.coords)
    x = t.c + t.a * xy[:, 0] + t.b * xy[:, 1]
    y = t.f + t.d * xy[:, 0] + t.e * xy[:, 1]
    lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return shapely.Polygon(np.column_stack([lon, lat]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("landcover")
    cfg = load_region(DEMO, {"output.dir": str(tmp / "out")})
    task = plan(cfg).tasks[1]
    windows = task.windows[:6]  # one row of chips, west to east, overlapping by half
    with rasterio.open(task.scene.bands[0].uri) as ds:
        chips = [_utm_outline(ds, w, 0, w.out_height, 0, w.out_width) for w in windows]
    w_, s_, e_, n_ = shapely.union_all(chips).bounds
    # the raster: from 30 % of the row's width (the first chip lies wholly west of it) to past its east end
    x0 = w_ + 0.3 * (e_ - w_)
    y0 = n_ + 20 * PX
    width, height = int((e_ - x0) / PX) + 40, int((n_ - s_) / PX) + 40
    col = lambda lon: int((lon - x0) / PX)  # noqa: E731
    row = lambda lat: int((y0 - lat) / PX)  # noqa: E731
    arr = np.full((height, width), 20, np.uint8)
    split = col(w_ + 0.55 * (e_ - w_))
    arr[:, :split] = 10
    top = row(n_ - 0.25 * (n_ - s_))
    arr[:top, col(w_ + 0.7 * (e_ - w_)) : col(w_ + 0.85 * (e_ - w_))] = 30  # unlisted
    bottom = row(s_ + 0.15 * (n_ - s_))
    arr[bottom:, :] = 255  # nodata strip in the south
    path = tmp / "lc.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(x0, y0, PX, PX),
        nodata=255,
    ) as dst:
        dst.write(arr, 1)

    # the same classes as polygons (pixel edges in degrees), for the independent recomputation
    def rect(c0: int, r0: int, c1: int, r1: int) -> shapely.Polygon:
        return shapely.box(x0 + c0 * PX, y0 - r1 * PX, x0 + c1 * PX, y0 - r0 * PX)

    a, b = col(w_ + 0.7 * (e_ - w_)), col(w_ + 0.85 * (e_ - w_))
    polys = {
        10: rect(0, 0, split, bottom),
        20: rect(split, 0, width, bottom).difference(rect(a, 0, b, top)),
        30: rect(a, 0, b, top),
    }
    valid = rect(0, 0, width, bottom)
    return {"cfg": cfg, "task": task, "windows": windows, "raster": path, "polys": polys, "valid": valid}


def _stage(setup: dict) -> LandcoverFractions:
    cfg = LandcoverConfig.model_validate({"raster": str(setup["raster"]), "classes": CLASSES})
    return LandcoverFractions(cfg, setup["cfg"])


def _expected(outline: shapely.Polygon, setup: dict) -> tuple[float, dict[int, float] | None]:
    """Covered share of the outline's area, and each class's share of the covered area (30: unlisted)."""
    covered = outline.intersection(setup["valid"]).area
    if covered == 0:
        return 0.0, None
    return covered / outline.area, {
        c: outline.intersection(p).area / covered for c, p in setup["polys"].items()
    }


def _check(section: dict, cov: float, shares: dict[int, float] | None, tol: float) -> None:
    assert section["covered_fraction"] == pytest.approx(cov, abs=tol)
    if shares is None:
        assert section["fractions"] is None and section["dominant"] is None
        return
    assert section["fractions"] == pytest.approx({n: shares[c] for c, n in CLASSES.items()}, abs=tol)
    assert section["unlisted_fraction"] == pytest.approx(shares[30], abs=tol)
    first, second = sorted(shares.values(), reverse=True)[:2]
    if first - second > 2 * tol:  # a clear winner: the dominant class (None when it is the unlisted 30)
        assert section["dominant"] == CLASSES.get(max(shares, key=lambda c: shares[c]))


def test_fractions_match_the_areas_of_the_class_rectangles(setup: dict) -> None:
    stage = _stage(setup)
    task = setup["task"]
    coverage = []
    with rasterio.open(task.scene.bands[0].uri) as ds:
        for w in setup["windows"]:
            section = stage.annotate(ChipRecord(chip_id_for(task.scene.scene_id, w), task.scene, w))
            assert section["raster"] == "lc.tif" and section["pixels"] == w.out_width * w.out_height
            cov, shares = _expected(_utm_outline(ds, w, 0, w.out_height, 0, w.out_width), setup)
            _check(section, cov, shares, tol=0.01)
            coverage.append(cov)
            # cells: pixel i of n is in band floor(3 (i + 0.5) / n), so band k starts at ceil(k n / 3 - 0.5)
            rows = [0, *(int(np.ceil(k * w.out_height / 3 - 0.5)) for k in (1, 2)), w.out_height]
            cols = [0, *(int(np.ceil(k * w.out_width / 3 - 0.5)) for k in (1, 2)), w.out_width]
            for cell in section["cells"]:
                i, j = divmod(cell["cell"] - 1, 3)
                outline = _utm_outline(ds, w, rows[i], rows[i + 1], cols[j], cols[j + 1])
                _check(cell, *_expected(outline, setup), tol=0.03)
    stage.close()
    assert coverage[0] == 0 and any(0 < c < 1 for c in coverage)  # wholly outside, and partly covered


def _region(tmp: Path, config: dict, **entry: object) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data" / "demo" / "spatialist" / "*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data" / "demo" / "aef_synthetic")
    raw["output"]["dir"] = "out"
    raw["stages"] = [{"name": "landcover_fractions", "config": config, **entry}]
    path = tmp / "region.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_errors_name_the_field_before_any_work(tmp_path: Path, setup: dict) -> None:
    with pytest.raises(ConfigError) as e:
        load_region(_region(tmp_path, {"raster": "missing.tif", "classes": CLASSES}))
    assert "stages[0].config.raster: missing.tif not found" in str(e.value) and "\n" not in str(e.value)
    with rasterio.open(
        tmp_path / "float.tif",
        "w",
        driver="GTiff",
        width=2,
        height=2,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(0, 1, 0.5, 0.5),
    ) as dst:
        dst.write(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.config\.raster: float\.tif holds float32 values"):
        load_region(_region(tmp_path, {"raster": "float.tif", "classes": CLASSES}))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.config\.classes: .*at least 1"):
        load_region(_region(tmp_path, {"raster": str(setup["raster"]), "classes": {}}))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.config\.colour: Extra inputs"):
        load_region(_region(tmp_path, {"raster": str(setup["raster"]), "classes": CLASSES, "colour": 1}))


def test_a_region_file_naming_it_builds_a_task(tmp_path: Path, setup: dict) -> None:
    (tmp_path / "lc.tif").write_bytes(Path(setup["raster"]).read_bytes())
    cfg: RegionConfig = load_region(
        _region(tmp_path, {"raster": "lc.tif", "classes": CLASSES}, after="facts")
    )
    assert cfg.stages[0].config["raster"] == str(tmp_path / "lc.tif")  # resolved against the region file
    other = load_region(_region(tmp_path, {"raster": "lc.tif", "classes": {10: "forest", 20: "grass"}}))
    assert cfg.config_hash() != other.config_hash()  # the plugin's config is part of the dataset's identity
    t = plan(cfg).tasks[1]
    res = run_task(TaskSpec(0, t.scene, t.windows[:6]), cfg)
    st = res["stats"]["landcover_fractions"]
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert rows and st["kept"] == st["seen"] >= len(rows)
    stage = LandcoverFractions(LandcoverConfig.model_validate(cfg.stages[0].config), cfg)
    windows = {chip_id_for(t.scene.scene_id, w): w for w in t.windows[:6]}
    for r in rows:
        facts = json.loads(r["facts"])
        rec = ChipRecord(r["chip_id"], t.scene, windows[r["chip_id"]])
        assert facts["ext"] == {"landcover_fractions": stage.annotate(rec)}
        assert str(tmp_path) not in r["facts"]  # no folder of the building machine in the rows
    stage.close()


@pytest.mark.slow
def test_the_cli_builds_the_demo_with_the_plugin(tmp_path: Path) -> None:
    """Through the CLI and Dask workers: the stage found by its entry point in each worker, its stats in the
    manifest between facts and text, and its section in every row."""
    import subprocess
    import sys

    with rasterio.open(
        ROOT / "data/demo/spatialist/S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
    ) as ds:
        crs, bounds = ds.crs, ds.bounds
    arr = np.where(np.arange(100)[None, :] < 50, 10, 20).astype(np.uint8).repeat(100, axis=0)
    with rasterio.open(
        tmp_path / "lc.tif",
        "w",
        driver="GTiff",
        width=100,
        height=100,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=from_origin(
            bounds.left, bounds.top, (bounds.right - bounds.left) / 100, (bounds.top - bounds.bottom) / 100
        ),
    ) as dst:
        dst.write(arr, 1)
    region = _region(tmp_path, {"raster": "lc.tif", "classes": CLASSES})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pipelines", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)

    v = run("validate", str(region))
    assert (
        v.returncode == 0
        and "stages: tile -> georeference -> embed -> screen -> facts -> landcover_fractions -> text"
        in v.stdout
    )
    r = run("build", str(region), "--no-progress")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["stage_order"][4:7] == ["facts", "landcover_fractions", "text"]
    assert m["stages"]["landcover_fractions"]["seen"] == m["stages"]["text"]["seen"] > 0
    assert m["plugins"] == [
        {
            "stage": "landcover_fractions",
            "ref": "landcover_fractions",
            "after": "facts",
            "sections": ["landcover_fractions"],
        }
    ]
    assert "adds `facts.ext.landcover_fractions`" in (tmp_path / "out" / "README.md").read_text()
    rows = pq.read_table(tmp_path / "out" / "data", columns=["facts"]).to_pylist()
    assert rows and len(rows) == m["stages"]["write"]["kept"]
    sections = [json.loads(r["facts"])["ext"]["landcover_fractions"] for r in rows]
    assert all(s["raster"] == "lc.tif" for s in sections)
    # the raster covers the port tile only: its chips are covered, the other scene's are not
    assert {s["covered_fraction"] == 1.0 for s in sections} == {True, False}
