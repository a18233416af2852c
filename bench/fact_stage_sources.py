"""Local sources for the land_cover and osm fact stages of the build benchmark, generated over a scene:
a WorldCover-coded land-cover raster (EPSG:4326, blocky classes of the legend) and a .osm.pbf extract
(seeded storage tanks, wind turbines, roads, buildings and a harbour), so that the benchmark measures
those stages' own cost with no network. The OSM data is written by the loopback fixture's writer
(tests/servers/overpass.py `OsmFixture.write_pbf`), the same code the stage's tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from schemas.vocabulary import WORLDCOVER_LEGEND

LAND_COVER_STEP_DEG = 1 / 2400  # about 46 m: coarser than the product's 1/12000 deg, enough to time the stage


def _scene_bounds(scene: Path) -> tuple[float, float, float, float]:
    with rasterio.open(scene) as ds:
        return transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)


def write_land_cover(path: Path, bounds: tuple[float, float, float, float], seed: int = 0) -> Path:
    """A uint8 raster of legend codes (patches of 9 x 13 px), no data 0, over `bounds` (+ 0.05 deg)."""
    w, s, e, n = bounds[0] - 0.05, bounds[1] - 0.05, bounds[2] + 0.05, bounds[3] + 0.05
    width, height = int(np.ceil((e - w) / LAND_COVER_STEP_DEG)), int(np.ceil((n - s) / LAND_COVER_STEP_DEG))
    codes = np.array(sorted(WORLDCOVER_LEGEND), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(codes), size=(height // 9 + 1, width // 13 + 1))
    data = codes[np.kron(coarse, np.ones((9, 13), dtype=np.int64))[:height, :width]]
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": from_origin(w, n, LAND_COVER_STEP_DEG, LAND_COVER_STEP_DEG),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


def write_osm(path: Path, bounds: tuple[float, float, float, float], seed: int = 0) -> Path:
    """A seeded .osm.pbf over `bounds`: 400 storage tanks, 200 wind turbines, 300 road segments, 600
    buildings and a harbour polygon."""
    from tests.servers.overpass import OsmFixture

    rng = np.random.default_rng(seed)
    w, s, e, n = bounds
    fx = OsmFixture()

    def pt() -> tuple[float, float]:
        return float(rng.uniform(w, e)), float(rng.uniform(s, n))

    nid = 1
    for _ in range(400):
        fx.node(nid, *pt(), man_made="storage_tank")
        nid += 1
    for _ in range(200):
        fx.nodes[nid] = (*pt(), {"power": "generator", "generator:source": "wind"})
        nid += 1
    wid = 10_000
    for _ in range(300):
        lon, lat = pt()
        fx.way(wid, [(lon, lat), (lon + 0.01, lat + 0.004), (lon + 0.02, lat)], {"highway": "primary"})
        wid += 1
    for _ in range(600):
        lon, lat = pt()
        d = 0.0004
        fx.way(
            wid, [(lon, lat), (lon + d, lat), (lon + d, lat + d), (lon, lat + d)], {"building": "yes"}, True
        )
        wid += 1
    cx, cy = (w + e) / 2, (s + n) / 2
    fx.way(
        wid, [(cx, cy), (cx + 0.05, cy), (cx + 0.05, cy + 0.03), (cx, cy + 0.03)], {"landuse": "port"}, True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return fx.write_pbf(path, bounds=(w - 0.05, s - 0.05, e + 0.05, n + 0.05))


def fact_stages(folder: Path, scene: Path) -> list[dict[str, Any]]:
    """The region file's `stages:` entries of land_cover (local raster) and osm (local .osm.pbf) over
    `scene`, written once into a folder of that scene's own (a source made for a smaller scene of the
    same name pattern would not cover a larger one)."""
    bounds = _scene_bounds(scene)
    folder = folder / scene.stem
    folder.mkdir(parents=True, exist_ok=True)
    lc = folder / "land_cover.tif"
    pbf = folder / "extract.osm.pbf"
    if not lc.exists():
        write_land_cover(lc, bounds)
    if not pbf.exists():
        write_osm(pbf, bounds)
    return [
        {"name": "land_cover", "config": {"source": "local", "path": str(lc)}},
        {"name": "osm", "config": {"source": "pbf", "path": str(pbf)}},
    ]
