"""The WorldCover tile source: tile names, reads through GDAL's /vsicurl/ against the loopback range server
(real layout, real file names), local folders, tile edges and open sea, compared with rasterio reads of the
files done independently (rasterio's own index of each point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import LoopbackServer, serve
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.triplet_builder.sources.worldcover_fixtures import reference_values, write_grid, write_tile
from triplet_builder.sources.worldcover import (
    GRID_PATH,
    LocalMap,
    MapMissingError,
    WorldCoverTiles,
    map_path,
    map_year,
    tile_name,
)

YEAR = 2021


@pytest.mark.parametrize(
    ("lon", "lat", "name"),
    [
        (3.0, 42.0001, "N42E003"),  # just inside the south-west corner
        (3.0, 42.0, "N39E003"),  # the corner itself lies on the parallel: the tile south of it
        (5.9999, 44.9999, "N42E003"),
        (6.0, 44.5, "N42E006"),  # exactly on a 3-degree meridian: the tile east of it
        (4.5, 45.0, "N42E003"),  # exactly on a 3-degree parallel: the tile south of it (top-left inclusive)
        (-59.5, -2.5, "S03W060"),
        (-60.0, -3.0, "S06W060"),
        (-0.0001, -0.0001, "S03W003"),
        (0.0, 0.0, "S03E000"),
        (-179.9, 89.9, "N87W180"),
        (180.0, -90.0, "S90E177"),  # the globe's edges are clamped into the last tiles
    ],
)
def test_tile_names(lon: float, lat: float, name: str) -> None:
    assert tile_name(lon, lat) == name


def test_paths_and_years() -> None:
    assert map_path(2020, "N42E003") == "v100/2020/map/ESA_WorldCover_10m_2020_v100_N42E003_Map.tif"
    assert map_path(2021, "S03W060") == "v200/2021/map/ESA_WorldCover_10m_2021_v200_S03W060_Map.tif"
    assert [map_year("nearest", y) for y in (2017, 2020, 2021, 2024)] == [2020, 2020, 2021, 2021]
    assert map_year(2020, 2024) == 2020


def _layout(root: Path) -> list[Path]:
    """Two small tiles meeting at 6 E (the N42E003 one ends exactly at its tile's east edge), and the grid
    file listing them and a third land tile N45E003 that the folder does not hold."""
    files = [
        write_tile(root, YEAR, "N42E003", 5.98, 43.70, 240, 120, seed=1),  # 5.98..6.00 E
        write_tile(root, YEAR, "N42E006", 6.00, 43.70, 180, 120, seed=2),  # 6.00..6.015 E
    ]
    write_grid(root, ["N42E003", "N42E006", "N45E003"])
    return files


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[tuple[LoopbackServer, list[Path]]]:
    root = tmp_path / "bucket"
    files = _layout(root)
    with serve(RangeHandler, **range_server_attrs(root)) as srv:
        yield srv, files


def _points(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(5.975, 6.02, n), rng.uniform(43.688, 43.702, n)  # over both tiles and past them


def test_remote_reads_match_independent_reads(
    bucket: tuple[LoopbackServer, list[Path]], tmp_path: Path
) -> None:
    srv, files = bucket
    lon, lat = _points()
    src = WorldCoverTiles(srv.url, cache_dir=str(tmp_path / "cache"))
    values, valid = src.sample(lon, lat, YEAR)
    want = reference_values(files, lon, lat)
    assert (want > 0).sum() > 150 and (want == 0).sum() > 10  # the points hit classes, no data and nothing
    np.testing.assert_array_equal(values, want)
    np.testing.assert_array_equal(valid, want > 0)
    assert {src.stats["tiles_opened"], src.stats["window_reads"]} == {2}  # one window per tile for all points
    # every request carried our User-Agent (the server refuses GDAL's default with 403)
    assert srv.log and all(r.user_agent.startswith("sar-triplets/") and r.status != 403 for r in srv.log)
    assert {r.path for r in srv.log} >= {"/" + GRID_PATH, "/" + map_path(YEAR, "N42E003")}
    src.close()
    # a rerun with the same cache makes no request at all (grid and windows cached on disk)
    n = len(srv.log)
    again = WorldCoverTiles(srv.url, cache_dir=str(tmp_path / "cache"))
    v2, _ = again.sample(lon, lat, YEAR)
    np.testing.assert_array_equal(v2, values)
    assert again.stats["window_cache_hits"] == 2
    assert len([r for r in srv.log[n:] if r.method == "GET" and r.range]) == 0


def test_chip_across_the_tile_edge_takes_each_side_from_its_tile(
    bucket: tuple[LoopbackServer, list[Path]],
) -> None:
    srv, files = bucket
    lon = np.array([5.99995, 6.0, 6.00005])  # west of, on and east of 6 E
    lat = np.full(3, 43.695)
    values, _ = WorldCoverTiles(srv.url).sample(lon, lat, YEAR)
    with __import__("rasterio").open(files[0]) as a, __import__("rasterio").open(files[1]) as b:
        west = a.read(1)[a.index(lon[0], lat[0])]
        on, east = (b.read(1)[b.index(x, lat[0])] for x in lon[1:])
    np.testing.assert_array_equal(values, [west, on, east])


def test_open_sea_has_no_value_and_is_not_water(bucket: tuple[LoopbackServer, list[Path]]) -> None:
    srv, _ = bucket
    lon, lat = np.array([4.0, 4.1]), np.array([39.5, 39.6])  # tile N39E003: not in the grid (sea)
    src = WorldCoverTiles(srv.url)
    values, valid = src.sample(lon, lat, YEAR)
    assert not valid.any() and (values == 0).all()
    assert src.stats["points_no_tile"] == 2 and src.stats["tiles_opened"] == 0
    assert not any("N39E003" in r.path for r in srv.log)  # a tile the grid does not list is never asked for


def test_listed_tile_missing_from_the_server_is_an_error_not_sea(
    bucket: tuple[LoopbackServer, list[Path]],
) -> None:
    srv, _ = bucket
    with pytest.raises(RuntimeError, match=r"N45E003_Map\.tif cannot be read") as e:
        WorldCoverTiles(srv.url).sample(np.array([4.5]), np.array([46.0]), YEAR)
    assert "\n" not in str(e.value)


def test_transient_503s_are_retried_by_gdal(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    files = _layout(root)
    lon, lat = _points(1, 50)
    with serve(RangeHandler, **range_server_attrs(root, fail_503=0)) as srv:
        src = WorldCoverTiles(srv.url)
        src.tiles()  # the grid first, then two 503s on the tile reads
        srv.fail_next["503"] = 2  # type: ignore[attr-defined]
        values, _ = src.sample(lon, lat, YEAR)
        assert [r.status for r in srv.log].count(503) == 2
    np.testing.assert_array_equal(values, reference_values(files, lon, lat))


def test_local_folder_layout_and_missing_tile(tmp_path: Path) -> None:
    files = _layout(tmp_path / "wc")
    lon, lat = _points(2)
    values, _ = WorldCoverTiles(str(tmp_path / "wc")).sample(lon, lat, YEAR)
    np.testing.assert_array_equal(values, reference_values(files, lon, lat))
    with pytest.raises(MapMissingError, match=r"tile N45E003 is missing: download https://esa-worldcover"):
        WorldCoverTiles(str(tmp_path / "wc")).sample(np.array([4.5]), np.array([46.0]), YEAR)
    # without the grid file a tile that is not there cannot be called sea: it is missing data
    (tmp_path / "wc" / GRID_PATH).unlink()
    with pytest.raises(MapMissingError, match="N39E003"):
        WorldCoverTiles(str(tmp_path / "wc")).sample(np.array([4.0]), np.array([39.5]), YEAR)


def test_local_single_raster_in_another_crs(tmp_path: Path) -> None:
    """One raster in UTM (e.g. a user's clip): points are transformed with pyproj into it."""
    import rasterio
    from affine import Affine

    path = tmp_path / "clip.tif"
    data = np.tile(np.array([10, 40, 80, 0], dtype=np.uint8), (50, 25))  # (50, 100)
    with rasterio.open(
        path, "w", driver="GTiff", width=100, height=50, count=1, dtype="uint8", crs="EPSG:32631",
        transform=Affine(10, 0, 640000, 0, -10, 4830000), nodata=255,
    ) as ds:  # fmt: skip
        ds.write(data, 1)
    from pyproj import Transformer

    x = 640000 + np.array([5.0, 15, 25, 35, 985, 1500])
    y = np.full(6, 4830000 - 5.0)
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(x, y)
    values, valid = LocalMap(str(path)).sample(np.asarray(lon), np.asarray(lat))
    assert values[:5].tolist() == [10, 40, 80, 0, 80]
    assert valid.tolist() == [True, True, True, False, True, False]  # 0 is no data; the last is outside
