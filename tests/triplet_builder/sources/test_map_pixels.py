"""The map pixel under each chip pixel centre (triplet_builder/sources/map_pixels.py) against projecting every
centre through pyproj, on chip grids across latitudes, CRSs, resampling, pixel edges under the centres, jumps
and the antimeridian; and the windows `gather_pixels` reads against `cluster_points`."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from tests.virtual_scene import virtual_scene
from triplet_builder.embeddings.earthengine import cluster_points
from triplet_builder.geo import SceneGeo
from triplet_builder.record import Window
from triplet_builder.sources import map_pixels as mp
from triplet_builder.sources.worldcover import LocalMap, WorldCoverTiles

WORLDCOVER = WorldCoverTiles("/nowhere").pixel_coords  # global WorldCover pixels: reads no file

WINDOWS = [
    Window(0, 0, 256, 256, 256, 256),
    Window(37, 11, 300, 300, 256, 256),  # resampled onto its own grid
    Window(5, 5, 90, 40, 60, 40),  # not square, the last lattice step shorter
]


def _geo(crs: str, x0: float, y0: float, res: float, shear: float = 0.0) -> SceneGeo:
    return SceneGeo(
        virtual_scene(
            scene_id=f"virtual_{crs}_{x0}_{y0}",
            crs=crs,
            width=400,
            height=400,
            pixel_size_m=res,
            transform=(res, shear, x0, shear, -res, y0),
        )
    )


def _all_projected(
    geo: SceneGeo, w: Window, to_pixel: mp.PixelCoords
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the stage computed before: every centre projected (meshgrid of the chip's own grid)."""
    h, wd = w.out_height, w.out_width
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(wd) + 0.5) / wd, indexing="ij")
    lon, lat = geo.chip_pixel_to_lonlat(w, yy.ravel(), xx.ravel())
    return mp.floor_index(*to_pixel(lon, lat))


def _check(geo: SceneGeo, to_pixel: mp.PixelCoords, *, fast: bool | None) -> None:
    """Every window's indices equal projecting every centre; `fast`: few centres were projected (True),
    all of them (False), either (None)."""
    for w in WINDOWS:
        (r, c, ok), projected = mp.chip_map_index(geo, w, to_pixel)
        want = _all_projected(geo, w, to_pixel)
        for got, exp in zip((r, c, ok), want, strict=True):
            np.testing.assert_array_equal(got, exp)
        n = w.out_height * w.out_width
        if fast is not None:
            assert (projected < n / 4) if fast else (projected == n), (w, projected)


def _local_map(tmp_path: Path, crs: str, x0: float, y0: float, res: float) -> LocalMap:
    path = tmp_path / "map.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs=crs,
        transform=Affine(res, 0, x0, 0, -res, y0),
    ) as ds:  # fmt: skip
        ds.write(np.ones((4, 4), np.uint8), 1)
    return LocalMap(str(path))


@pytest.mark.parametrize(
    ("crs", "x0", "y0", "res", "shear", "fast"),
    [
        ("EPSG:32631", 640000, 4815000, 10, 0.0, True),  # the benchmark's scene, 43 N
        ("EPSG:32631", 500000, 15000, 10, 0.0, True),  # at the equator
        ("EPSG:32733", 300000, 7400000, 20, 0.0, True),  # southern hemisphere
        ("EPSG:32633", 430000, 7800000, 10, 0.7, True),  # 70 N, a sheared grid
        ("EPSG:32633", 480000, 9300000, 40, 0.0, None),  # 84 N, 10 km chips: meridians curve, many near
        ("EPSG:4326", 4.7, 43.5, 1 / 9137, 0.0, True),  # a geographic scene
        ("EPSG:4326", 4.7, 43.5, 1 / 9000, 0.0, None),  # ... on a grid commensurate with the map's: many
    ],  # centres on the map's pixel edges, each projected
)
def test_worldcover_pixels_match_projecting_every_centre(
    crs: str, x0: float, y0: float, res: float, shear: float, fast: bool | None
) -> None:
    _check(_geo(crs, x0, y0, res, shear), WORLDCOVER, fast=fast)


def test_a_local_map_in_another_projection(tmp_path: Path) -> None:
    m = _local_map(tmp_path, "EPSG:3035", 3800000, 2400000, 10)  # ETRS89-LAEA, its own 10 m grid
    _check(_geo("EPSG:32631", 640000, 4815000, 10), m.pixel_coords, fast=True)
    m.close()


def test_centres_on_the_map_pixel_edges(tmp_path: Path) -> None:
    # the map's 10 m grid in the scene's CRS, offset by half a pixel: every centre lies on a pixel edge (a
    # round trip through lon/lat puts it a hair either side), so each one is projected, and each agrees
    m = _local_map(tmp_path, "EPSG:32631", 640005, 4815005, 10)
    (r, c, ok), projected = mp.chip_map_index(
        _geo("EPSG:32631", 640000, 4815000, 10), WINDOWS[0], m.pixel_coords
    )
    want = _all_projected(_geo("EPSG:32631", 640000, 4815000, 10), WINDOWS[0], m.pixel_coords)
    for got, exp in zip((r, c, ok), want, strict=True):
        np.testing.assert_array_equal(got, exp)
    assert projected > 0.9 * 256 * 256
    m.close()


@pytest.mark.parametrize("jump", [3e-4, 0.02, 0.3, 0.49])
def test_a_jump_between_lattice_nodes_is_caught(jump: float) -> None:
    """A map whose coordinates jump east of a meridian inside the chip (as a datum operation switching at
    its area of use would) still floors exactly as projecting every centre does."""

    def jumpy(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, c = WORLDCOVER(lon, lat)
        return r + jump * (lon > 4.753217), c + jump * (lon > 4.753217)

    _check(_geo("EPSG:32631", 640000, 4815000, 10), jumpy, fast=True if jump < 0.1 else None)


def test_a_chip_across_the_antimeridian_is_projected_in_full() -> None:
    x0 = Transformer.from_crs("EPSG:4326", "EPSG:32660", always_xy=True).transform(179.99, 60.0)[0]
    _check(_geo("EPSG:32660", x0, 6654000, 10), WORLDCOVER, fast=False)


def test_small_and_unplaceable_chips_are_projected_in_full() -> None:
    geo = _geo("EPSG:32631", 640000, 4815000, 10)
    w = Window(0, 0, 20, 20, 20, 20)  # smaller than two lattice steps
    assert mp.chip_map_index(geo, w, WORLDCOVER)[1] == 400

    def nowhere(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, c = WORLDCOVER(lon, lat)
        return np.where(lat > 43.47, np.nan, r), c  # a map that cannot place the chip's top rows

    (r, c, ok), projected = mp.chip_map_index(geo, WINDOWS[0], nowhere)
    want = _all_projected(geo, WINDOWS[0], nowhere)
    assert projected == 256 * 256 and 0 < ok.sum() < ok.size
    for got, exp in zip((r, c, ok), want, strict=True):
        np.testing.assert_array_equal(got, exp)


# -- gather_pixels ---------------------------------------------------------------------------------------


def _clumps(rng: np.random.Generator, *boxes: tuple[int, int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Random pixels in boxes (row0, col0, height, width, count)."""
    rows, cols = [], []
    for r0, c0, h, w, n in boxes:
        rows.append(rng.integers(r0, r0 + h, n))
        cols.append(rng.integers(c0, c0 + w, n))
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def _blocks(*boxes: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Every pixel of boxes (row0, col0, height, width)."""
    rows, cols = zip(
        *(np.mgrid[r0 : r0 + h, c0 : c0 + w].reshape(2, -1) for r0, c0, h, w in boxes), strict=True
    )
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


POINT_SETS: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, ...]]] = {
    "one clump": lambda g: _clumps(g, (100, 50, 300, 450, 20000)),
    "two clumps, a bitmap": lambda g: _clumps(g, (0, 0, 50, 50, 3000), (1000, 1500, 50, 40, 3000)),
    "two clumps, too far for one": lambda g: _clumps(g, (0, 0, 50, 50, 500), (3000, 2000, 40, 50, 500)),
    "a diagonal": lambda g: (np.arange(0, 900, 3, dtype=np.int64), np.arange(0, 1800, 6, dtype=np.int64)),
    "one pixel": lambda g: (np.full(5, 7, dtype=np.int64), np.full(5, 9, dtype=np.int64)),
    "clumps over the size limit": lambda g: _clumps(g, (0, 0, 90, 90, 4000), (60, 120, 80, 100, 4000)),
    # two full blocks filling 9,950 of their 20,000 px box: just under half, so the box splits
    "two blocks at the fill limit": lambda g: _blocks((0, 0, 100, 50), (0, 150, 99, 50)),
}


@pytest.mark.parametrize("name", sorted(POINT_SETS))
def test_gather_reads_the_windows_cluster_points_lays(name: str) -> None:
    rng = np.random.default_rng(7)
    rows, cols = POINT_SETS[name](rng)
    raster = rng.integers(0, 255, size=(3100, 2100), dtype=np.uint8)
    max_pixels = 6000 if "size limit" in name else 16 * 2**20
    reads: list[tuple[int, int, int, int]] = []

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        reads.append((r0, r1, c0, c1))
        return raster[r0:r1, c0:c1]

    cuts = [0, rows.size // 3, rows.size // 3, rows.size]  # three parts (chips), one of them empty
    parts = [(rows[a:b].astype(np.int32), cols[a:b].astype(np.int32)) for a, b in itertools.pairwise(cuts)]
    got = mp.gather_pixels(parts, read, np.uint8, max_pixels=max_pixels)
    assert [g.size for g in got] == [r.size for r, _ in parts]
    np.testing.assert_array_equal(np.concatenate(got), raster[rows, cols])
    pix = np.unique(np.column_stack([rows, cols]), axis=0)
    want = [
        (c.iy0, c.iy1 + 1, c.ix0, c.ix1 + 1)
        for c in cluster_points(pix[:, 1], pix[:, 0], max_pixels=max_pixels)
    ]
    assert reads == want
    if name != "one clump" and name != "one pixel":
        assert len(reads) > 1  # the cases split: the comparison is not only of one bounding box
