"""AlphaEarth embeddings at points from Earth Engine (`GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`).

Same protocol as CogEmbeddingProvider: `sample(lon, lat, year) -> (codes (N, 64) int8, valid (N,))`.

How: the annual collection filtered to the year is mosaicked, its 64 bands selected and masked pixels
unmasked to a sentinel (masked pixels would otherwise come back as 0.0, a plausible-looking vector).
Points are grouped by UTM zone; in each zone the pixels holding the points are fetched through
computePixels on a grid whose pixel centres are the centres of the product's own 10 m pixels (edges on
multiples of 10 m): the coarsest lattice of those pixels that holds every point (anchors of chips on
one scene grid are every n-th pixel), so nearest resampling returns exactly the pixels a point read
of the COG files would, and nothing between anchors is fetched. The points of many chips (the Embed stage passes up to 64 chips per call) are clustered
into as few grids as the limits allow: a cluster's bounding grid is cut in two along its longer side
while it is over the request limit (48 MiB, 32768 px per side) or mostly empty (two chips far apart
are two small requests, not one huge one). The float values are quantized with schemas.aef.quantize,
the exact inverse of the COG files' codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import Transformer

from triplet_builder.earthengine import (
    MAX_GRID_SIDE,
    MAX_REQUEST_BYTES,
    ClientSettings,
    ComputePixelsRunner,
    Grid,
    ImageSpec,
    PixelRequest,
    band_stack,
)
from triplet_builder.embeddings.quantize import NODATA, quantize
from triplet_builder.embeddings.tiles import EDGE_EPS, point_zone_codes

COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
BANDS = tuple(f"A{i:02d}" for i in range(64))
PIXEL_M = 10.0
SENTINEL = -9999.0  # far outside [-1, 1]


@dataclass(frozen=True)
class Cluster:
    """Points (indices into the zone's arrays) served by one grid of 10 m pixels [ix0, ix1] x [iy0, iy1]
    (column / row indices of pixel centres: x = (ix + 0.5) * 10, y = (iy + 0.5) * 10)."""

    members: np.ndarray
    ix0: int
    ix1: int
    iy0: int
    iy1: int

    @property
    def width(self) -> int:
        return self.ix1 - self.ix0 + 1

    @property
    def height(self) -> int:
        return self.iy1 - self.iy0 + 1


def cluster_points(
    ix: np.ndarray, iy: np.ndarray, *, max_pixels: int, max_side: int = MAX_GRID_SIDE, min_fill: float = 0.5
) -> list[Cluster]:
    """Group integer pixel positions into bounding grids of at most `max_pixels` pixels and `max_side` per
    side, splitting a grid at the middle of its longer side while it is too large, or while its two
    halves' grids would cover less than `min_fill` of it (the points are in separate clumps)."""
    out: list[Cluster] = []
    stack = [np.arange(ix.size)]
    while stack:
        m = stack.pop()
        x0, x1, y0, y1 = int(ix[m].min()), int(ix[m].max()), int(iy[m].min()), int(iy[m].max())
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w == 1 and h == 1:
            out.append(Cluster(m, x0, x1, y0, y1))
            continue
        if w >= h:
            left = ix[m] <= (x0 + x1) // 2
        else:
            left = iy[m] <= (y0 + y1) // 2
        a, b = m[left], m[~left]
        too_big = w * h > max_pixels or max(w, h) > max_side
        if not too_big:
            halves = sum(
                (int(ix[p].max()) - int(ix[p].min()) + 1) * (int(iy[p].max()) - int(iy[p].min()) + 1)
                for p in (a, b)
            )
            if halves >= min_fill * w * h:
                out.append(Cluster(m, x0, x1, y0, y1))
                continue
        stack.extend([b, a])
    return out


def lattice(i: np.ndarray) -> tuple[int, int]:
    """(origin, step): the coarsest regular lattice origin + k * step holding every integer in `i`."""
    origin = int(i.min())
    step = int(np.gcd.reduce(np.unique(i) - origin)) if i.size > 1 else 0
    return origin, max(step, 1)


class EarthEngineEmbeddingProvider:
    """AlphaEarth codes at WGS84 points, fetched from Earth Engine with computePixels.

    Picklable (it travels to Dask workers): the runner inside opens its thread pool, cache and client
    lazily in each process. Thread-safe for concurrent `sample` calls through the runner.
    """

    synthetic = False

    def __init__(
        self,
        settings: ClientSettings,
        *,
        collection: str = COLLECTION,
        credentials: Any = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        min_fill: float = 0.5,
    ) -> None:
        self.settings = settings
        self.collection = collection
        self.min_fill = min_fill
        self.description = f"earthengine:{collection}"
        self.runner = ComputePixelsRunner(
            settings, credentials=credentials, max_request_bytes=max_request_bytes
        )
        self.stats: dict[str, int] = {"calls": 0, "points": 0, "points_valid": 0, "grids": 0}
        self._transformers: dict[int, Transformer] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_transformers"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._transformers = {}

    def __repr__(self) -> str:
        return f"EarthEngineEmbeddingProvider({self.collection!r}, endpoint={self.settings.endpoint!r})"

    def close(self) -> None:
        self.runner.close()

    def drain_counters(self) -> dict[str, int]:
        """Request counters since the last call (for the Embed stage's Stats.extra), prefixed `ee_`."""
        return {f"ee_{k}": v for k, v in self.runner.drain().items()}

    def image(self, year: int) -> ImageSpec:
        return ImageSpec(
            bands=BANDS,
            sentinel=SENTINEL,
            collection=self.collection,
            start=f"{int(year)}-01-01",
            end=f"{int(year) + 1}-01-01",
        )

    def _to_utm(self, epsg: int) -> Transformer:
        tr = self._transformers.get(epsg)
        if tr is None:
            tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
            self._transformers[epsg] = tr
        return tr

    def plan(
        self, lon: np.ndarray, lat: np.ndarray, year: int
    ) -> list[tuple[PixelRequest, np.ndarray, np.ndarray]]:
        """The requests serving the points, zone by zone: (request, the points' indices, their (row, col)
        in the request's grid)."""
        zone = point_zone_codes(lon, lat)  # zone * 2 + south
        image = self.image(year)
        max_pixels = max(1, self.runner.max_request_bytes // (len(BANDS) * image.bytes_per_value))
        out = []
        for code in np.unique(zone):
            pts = np.flatnonzero(zone == code)
            epsg = (32700 if code % 2 else 32600) + int(code) // 2
            x, y = self._to_utm(epsg).transform(lon[pts], lat[pts])
            # a point on a pixel edge (to within float noise) goes east / north, as in the COG provider
            ix = np.floor(np.asarray(x) / PIXEL_M + EDGE_EPS).astype(np.int64)
            iy = np.floor(np.asarray(y) / PIXEL_M + EDGE_EPS).astype(np.int64)
            # The anchors of chips on one scene grid fall on a lattice of 10 m pixels (every 16th pixel
            # for 256 px chips and 16 x 16 anchors): request that lattice, with its pixel centres on the
            # centres of the 10 m pixels holding the points, so nearest resampling returns exactly those
            # pixels and nothing between them is fetched. Scattered points give steps of 1: the dense grid.
            ox, dx = lattice(ix)
            oy, dy = lattice(iy)
            lx, ly = (ix - ox) // dx, (iy - oy) // dy
            for c in cluster_points(lx, ly, max_pixels=max_pixels, min_fill=self.min_fill):
                left = (ox + c.ix0 * dx + 0.5 - dx / 2) * PIXEL_M
                top = (oy + c.iy1 * dy + 0.5 + dy / 2) * PIXEL_M
                grid = Grid(
                    f"EPSG:{epsg}",
                    (dx * PIXEL_M, 0.0, left, 0.0, -dy * PIXEL_M, top),
                    c.width,
                    c.height,
                )
                rows = c.iy1 - ly[c.members]  # north-up: row 0 holds the largest northing
                cols = lx[c.members] - c.ix0
                out.append((PixelRequest(image, grid), pts[c.members], np.column_stack([rows, cols])))
        return out

    def sample(self, lon: np.ndarray, lat: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes (N, 64) int8 (-128 where invalid) and validity (N,) bool of N WGS84 points in `year`."""
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        if lon.shape != lat.shape:
            raise ValueError(f"lon and lat differ in length: {lon.size} != {lat.size}")
        n = lon.size
        codes = np.full((n, len(BANDS)), NODATA, dtype=np.int8)
        valid = np.zeros(n, dtype=bool)
        self.stats["calls"] += 1
        self.stats["points"] += n
        finite = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 84.0))
        if finite.size == 0:
            return codes, valid
        plan = self.plan(lon[finite], lat[finite], year)
        self.stats["grids"] += len(plan)
        arrays = self.runner.fetch_many([req for req, _, _ in plan])
        for (_, idx, rc), arr in zip(plan, arrays, strict=True):
            values, ok = band_stack(arr, BANDS, SENTINEL)  # (64, H, W), (H, W)
            r, c = rc[:, 0], rc[:, 1]
            v = values[:, r, c].T  # (M, 64)
            good = ok[r, c]
            target = finite[idx]
            codes[target] = quantize(v, good)
            valid[target] = good
        self.stats["points_valid"] += int(valid.sum())
        return codes, valid
