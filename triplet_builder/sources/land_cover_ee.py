"""Land-cover maps at points from Earth Engine: ESA WorldCover (`ESA/WorldCover/v100|v200`, band `Map`) and
Google Dynamic World (`GOOGLE/DYNAMICWORLD/V1`, band `label`, the mode over a date window).

How: points are put on the product's own pixel lattice and fetched with computePixels through the project's
client (triplet_builder/earthengine/: cache, bounded retries, splitting), on grids whose pixel centres are
the product's pixel centres, so nearest resampling returns the product's pixels unchanged:
- WorldCover: EPSG:4326, 1/12000 degree pixels with edges on multiples of 1/12000 degree (the COG tiles'
  grid): the same pixel a COG read gives (triplet_builder/sources/worldcover.py);
- Dynamic World (stored per Sentinel-2 image in its UTM zone at 10 m): the points' UTM zone, 10 m pixels
  with edges on multiples of 10 m.
The points of a batch of chips are clustered into as few grids as the request limit allows. Masked pixels
are unmasked to a sentinel and come back invalid (a masked pixel is no data, never class 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import Transformer

from triplet_builder.earthengine import (
    MAX_REQUEST_BYTES,
    ClientSettings,
    ComputePixelsRunner,
    Grid,
    ImageSpec,
    PixelRequest,
    band_stack,
)
from triplet_builder.embeddings.earthengine import cluster_points
from triplet_builder.embeddings.tiles import EDGE_EPS, point_zone_codes
from triplet_builder.sources.worldcover import PIXELS_PER_DEGREE, global_index

WORLDCOVER_COLLECTION = "ESA/WorldCover/{version}"
DYNAMIC_WORLD_COLLECTION = "GOOGLE/DYNAMICWORLD/V1"
SENTINEL = -9999.0
DW_PIXEL_M = 10.0


@dataclass(frozen=True, slots=True)
class ReducedImageSpec(ImageSpec):
    """An ImageSpec whose collection is reduced per pixel by `reducer` (`mosaic`, or `mode`: the most common
    value of the images starting in [start, end), masked pixels left out)."""

    reducer: str = "mosaic"

    def to_ee(self) -> Any:
        if self.reducer == "mosaic":
            return ImageSpec.to_ee(self)
        import ee

        col = ee.ImageCollection(self.collection)
        if self.start is not None and self.end is not None:
            col = col.filterDate(self.start, self.end)
        # reduce() names its outputs <band>_mode: select them back under the bands' own names
        img = col.reduce(ee.Reducer.mode()).select([f"{b}_mode" for b in self.bands], list(self.bands))
        return img.unmask(self.sentinel, False).toFloat()


def worldcover_image(version: str) -> ReducedImageSpec:
    return ReducedImageSpec(
        bands=("Map",), sentinel=SENTINEL, collection=WORLDCOVER_COLLECTION.format(version=version)
    )


def dynamic_world_image(start: str, end: str) -> ReducedImageSpec:
    """The mode of `label` over the images starting in [start, end) (end exclusive, ISO dates)."""
    return ReducedImageSpec(
        bands=("label",),
        sentinel=SENTINEL,
        collection=DYNAMIC_WORLD_COLLECTION,
        start=start,
        end=end,
        reducer="mode",
    )


# a lattice: WGS84 points -> groups of (crs, pixel size, column index, row index from the north)
Lattice = Callable[[np.ndarray, np.ndarray], list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]]]


def worldcover_lattice(
    lon: np.ndarray, lat: np.ndarray
) -> list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]]:
    """One group: EPSG:4326, global pixel indices of the WorldCover grid (x from 180 W, rows from 90 N)."""
    row, col = global_index(lon, lat)
    step = 1.0 / PIXELS_PER_DEGREE
    return [
        ("EPSG:4326", step, np.arange(lon.size), col - 180 * PIXELS_PER_DEGREE, row - 90 * PIXELS_PER_DEGREE)
    ]


def utm_lattice(
    lon: np.ndarray, lat: np.ndarray
) -> list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]]:
    """Per UTM zone of the points: 10 m pixel indices (x = column * 10 m, northing = -row * 10 m)."""
    zone = point_zone_codes(lon, lat)
    out = []
    for code in np.unique(zone):
        pts = np.flatnonzero(zone == code)
        epsg = (32700 if code % 2 else 32600) + int(code) // 2
        x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon[pts], lat[pts])
        # a point on a pixel edge to within float noise (centres of 20 m chip pixels on a 20 m scene grid lie
        # exactly on 10 m edges) goes to the pixel east / south of it, as GDAL indexes (top-left inclusive)
        ix = np.floor(np.asarray(x) / DW_PIXEL_M + EDGE_EPS).astype(np.int64)
        iy = np.floor(-np.asarray(y) / DW_PIXEL_M + EDGE_EPS).astype(np.int64)
        out.append((f"EPSG:{epsg}", DW_PIXEL_M, pts, ix, iy))
    return out


class EarthEngineLandCover:
    """Class values at WGS84 points of an Earth Engine land-cover image, read by computePixels."""

    def __init__(self, settings: ClientSettings, *, credentials: Any = None) -> None:
        self.runner = ComputePixelsRunner(settings, credentials=credentials)
        self.stats: dict[str, int] = {"points": 0, "grids": 0}

    def close(self) -> None:
        self.runner.close()

    def drain_counters(self) -> dict[str, int]:
        """Request counters since the last call, prefixed `ee_` (requests, retries, cache_hits, bytes...)."""
        return {f"ee_{k}": v for k, v in self.runner.drain().items()}

    def sample(
        self, lon: np.ndarray, lat: np.ndarray, image: ImageSpec, lattice: Lattice
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values (N,) int64 (0 where invalid) and validity (N,) of N WGS84 points."""
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        values = np.zeros(lon.size, dtype=np.int64)
        valid = np.zeros(lon.size, dtype=bool)
        self.stats["points"] += lon.size
        finite = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
        if finite.size == 0:
            return values, valid
        max_pixels = max(1, self.runner.max_request_bytes // (len(image.bands) * image.bytes_per_value))
        plan: list[tuple[PixelRequest, np.ndarray, np.ndarray, np.ndarray]] = []
        for crs, step, pts, ix, iy in lattice(lon[finite], lat[finite]):
            for c in cluster_points(ix, iy, max_pixels=min(max_pixels, MAX_REQUEST_BYTES // 4)):
                grid = Grid(crs, (step, 0.0, c.ix0 * step, 0.0, -step, -c.iy0 * step), c.width, c.height)
                m = c.members
                plan.append((PixelRequest(image, grid), finite[pts[m]], iy[m] - c.iy0, ix[m] - c.ix0))
        self.stats["grids"] += len(plan)
        arrays = self.runner.fetch_many([p[0] for p in plan])
        for (_, idx, rows, cols), arr in zip(plan, arrays, strict=True):
            v, ok = band_stack(arr, image.bands, SENTINEL)  # (1, H, W), (H, W)
            good = ok[rows, cols]
            values[idx[good]] = np.rint(v[0, rows[good], cols[good]]).astype(np.int64)
            valid[idx] = good
        return values, valid


__all__ = [
    "DYNAMIC_WORLD_COLLECTION",
    "EarthEngineLandCover",
    "ReducedImageSpec",
    "dynamic_world_image",
    "utm_lattice",
    "worldcover_image",
    "worldcover_lattice",
]
