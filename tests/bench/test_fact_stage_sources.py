"""The benchmark's local land_cover and osm sources: generated over a real demo tile, accepted by the
region file's validation, and holding what the stages read (legend codes, a .osm.pbf with a box)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from bench.fact_stage_sources import fact_stages
from schemas.vocabulary import WORLDCOVER_LEGEND
from tests.conftest import ROOT
from triplet_builder.config import load_region
from triplet_builder.sources.osm_pbf import read_header

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def test_sources_cover_the_scene_and_the_region_accepts_them(tmp_path: Path) -> None:
    scene = sorted((ROOT / "data/demo/spatialist").glob("*.tif"))[0]
    stages = fact_stages(tmp_path, scene)
    assert [s["name"] for s in stages] == ["land_cover", "osm"]
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out"), "stages": stages})
    assert [s.name for s in cfg.stages] == ["land_cover", "osm"]
    with rasterio.open(stages[0]["config"]["path"]) as ds:
        codes = np.unique(ds.read(1))
        w, s, e, n = ds.bounds
    assert set(codes.tolist()) <= set(WORLDCOVER_LEGEND) and len(codes) > 3
    with rasterio.open(scene) as sc:
        from rasterio.warp import transform_bounds

        sw, ss, se, sn = transform_bounds(sc.crs, "EPSG:4326", *sc.bounds)
    assert w <= sw and s <= ss and e >= se and n >= sn  # the map covers the whole scene
    box = read_header(Path(stages[1]["config"]["path"])).bounds
    assert box is not None and box[0] <= sw and box[1] <= ss and box[2] >= se and box[3] >= sn
