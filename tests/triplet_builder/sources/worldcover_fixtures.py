"""Generated ESA WorldCover tiles in the product's REAL layout, for the loopback range server and local folders.

Each tile has the real file name and folder (`v200/2021/map/ESA_WorldCover_10m_2021_v200_N42E003_Map.tif`),
EPSG:4326, 1/12000 degree pixels aligned on the product's grid, uint8 COG, nodata 0 and values of the
legend only. A fixture tile is SMALL: it covers only a part of its 3 x 3 degree tile (the real ones cover
all of it, 36000 x 36000 px), at the right place inside it. The grid file lists the tiles that "exist"
(`ll_tile`, as the product's esa_worldcover_2020_grid.geojson does); the rest is open sea.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from schemas.vocabulary import WORLDCOVER_LEGEND
from triplet_builder.sources.worldcover import GRID_PATH, PIXELS_PER_DEGREE, map_path

CODES = np.array(sorted(WORLDCOVER_LEGEND), dtype=np.uint8)


def class_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Blocky classes of the legend (patches of 7 x 11 px and stripes), with a no-data (0) patch."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(CODES), size=(height // 7 + 1, width // 11 + 1))
    data = CODES[np.kron(coarse, np.ones((7, 11), dtype=np.int64))[:height, :width]]
    data[height // 3 : height // 3 + 9, width // 2 : width // 2 + 13] = 0  # no data
    return data


def write_tile(
    root: Path, year: int, tile: str, west: float, north: float, width: int, height: int, seed: int = 0
) -> Path:
    """A uint8 COG of the tile's layout under `root`, its top-left corner at (west, north)."""
    assert abs(west * PIXELS_PER_DEGREE - round(west * PIXELS_PER_DEGREE)) < 1e-6  # on the product grid
    assert abs(north * PIXELS_PER_DEGREE - round(north * PIXELS_PER_DEGREE)) < 1e-6
    path = root / map_path(year, tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = 1.0 / PIXELS_PER_DEGREE
    profile = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": Affine(step, 0.0, west, 0.0, -step, north),
        "nodata": 0,
        "blocksize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(class_pattern(height, width, seed), 1)
    return path


def write_grid(root: Path, tiles: list[str]) -> Path:
    """The product's grid file (only `ll_tile` is read; geometry left out of the fixture)."""
    path = root / GRID_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    features = [{"type": "Feature", "properties": {"ll_tile": t}, "geometry": None} for t in tiles]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def reference_values(files: list[Path], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The value of the file pixel under each point, read with rasterio's own index (0 outside every file)."""
    out = np.zeros(lon.size, dtype=np.int64)
    for f in files:
        with rasterio.open(f) as ds:
            data = ds.read(1)
            for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
                r, c = ds.index(x, y)
                if 0 <= r < ds.height and 0 <= c < ds.width:
                    out[i] = data[r, c]
    return out
