"""The STAC scene source with the REAL pystac-client against a loopback STAC API, whose asset hrefs point
at COGs (made from the real Sentinel-1 tiles in tests/data/real) on a loopback range server that refuses
requests without our User-Agent: search filters, pagination, SceneRef fields, unreadable assets, failing
searches, and the whole pipeline end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

import triplet_builder.sources.stac as stac_mod
from tests.conftest import OPERA, ROOT, SPATIALIST
from tests.servers import LoopbackServer, serve
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.servers.stac import CORE, StacHandler, stac_server_attrs
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.record import Backscatter, GeorefKind, Scale
from triplet_builder.sources.stac import USER_AGENT, StacSearchError, find_stac_scenes, gdal_path

PORT_2017 = SPATIALIST / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
CAMARGUE_2017 = SPATIALIST / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
CAMARGUE_2015 = SPATIALIST / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
SYNTHETIC_AEF = ROOT / "data" / "demo" / "aef_synthetic"
COLLECTION = "sentinel-1-rtc"


# ------------------------------------------------------------------------------------------ fixtures
def _to_linear_cog(src: Path, dst: Path) -> None:
    """A COG of a real tile in linear power (the RTC catalogues' unit): dB -> 10^(dB/10), nodata -> NaN."""
    with rasterio.open(src) as ds:
        db = ds.read(1).astype(np.float64)
        valid = db != ds.nodata if ds.nodata is not None else np.isfinite(db)
        lin = np.where(valid, 10.0 ** (db / 10.0), np.nan).astype(np.float32)
        profile = {
            "driver": "COG",
            "width": ds.width,
            "height": ds.height,
            "count": 1,
            "dtype": "float32",
            "crs": ds.crs,
            "transform": ds.transform,
            "nodata": float("nan"),
            "blocksize": 128,
            "compress": "deflate",
        }
    with rasterio.open(dst, "w", **profile) as out:
        out.write(lin, 1)


def _copy_cog(src: Path, dst: Path) -> None:
    """A COG of a real file as it is (the OPERA RTC crop is already linear gamma0 with NaN)."""
    with rasterio.open(src) as ds:
        profile = {**ds.profile, "driver": "COG", "blocksize": 128, "compress": "deflate"}
        for k in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(k, None)
        data = ds.read()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)


@dataclass(frozen=True)
class Cogs:
    folder: Path
    port: str  # file names under folder
    camargue: str
    camargue_2015: str
    opera: str


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> Cogs:
    folder = tmp_path_factory.mktemp("cogs")
    (folder / "s1").mkdir()
    names = Cogs(folder, "s1/port_vv.tif", "s1/camargue_vv.tif", "s1/camargue_2015_vv.tif", "s1/opera_vh.tif")
    _to_linear_cog(PORT_2017, folder / names.port)
    _to_linear_cog(CAMARGUE_2017, folder / names.camargue)
    _to_linear_cog(CAMARGUE_2015, folder / names.camargue_2015)
    _copy_cog(OPERA, folder / names.opera)
    return names


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the retry count but shrink the backoff, so fault tests take milliseconds."""
    monkeypatch.setattr(stac_mod, "SEARCH_BACKOFF_S", 0.01)
    monkeypatch.setattr(stac_mod, "SEARCH_MAX_BACKOFF_S", 0.05)


@pytest.fixture
def range_srv(cogs: Cogs) -> Iterator[LoopbackServer]:
    with serve(RangeHandler, **range_server_attrs(cogs.folder)) as srv:
        yield srv


def footprint(path: Path) -> dict[str, Any]:
    """The lon/lat footprint of a raster, as STAC item geometry."""
    with rasterio.open(path) as ds:
        return mapping(box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)))


def make_item(
    item_id: str,
    assets: dict[str, str],
    geometry: dict[str, Any],
    when: str,
    *,
    orbit: str = "descending",
    platform: str = "SENTINEL-1A",
    collection: str = COLLECTION,
) -> dict[str, Any]:
    """A STAC item in the form of the Planetary Computer's sentinel-1-rtc items."""
    shp = box(*_bounds(geometry))
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": list(shp.bounds),
        "properties": {
            "datetime": when,
            "platform": platform,
            "constellation": "Sentinel-1",
            "sat:orbit_state": orbit,
            "sar:instrument_mode": "IW",
            "sar:product_type": "RTC",
            "sar:polarizations": [k.upper() for k in assets],
        },
        "assets": {
            k: {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
            for k, href in assets.items()
        },
        "links": [],
    }


def _bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    from shapely.geometry import shape

    b = shape(geometry).bounds
    return (b[0], b[1], b[2], b[3])


def region_cfg(tmp: Path, url: str, bbox: tuple[float, float, float, float], **scenes: Any) -> RegionConfig:
    """A validated region config with a STAC scene source (through the real region-file loader)."""
    raw: dict[str, Any] = {
        "name": "stac_test",
        "area": {"bbox": list(bbox)},
        "years": scenes.pop("years", [2017]),
        "scenes": {"type": "stac", "url": url, "collection": COLLECTION, **scenes},
        "embeddings": {"type": "cog", "root": str(SYNTHETIC_AEF), "synthetic": True},
        "output": {"dir": str(tmp / "out")},
    }
    if "dates" in raw["scenes"]:
        raw["dates"] = raw["scenes"].pop("dates")
        raw.pop("years")
    p = tmp / "region.yaml"
    p.write_text(yaml.safe_dump(raw))
    return load_region(p)


def port_bbox(cogs: Cogs, shrink: float = 0.1) -> tuple[float, float, float, float]:
    """A region inside the Port-Saint-Louis tile (each side moved in by `shrink` of the tile size)."""
    w, s, e, n = box(*_bounds(footprint(cogs.folder / cogs.port))).bounds
    dx, dy = (e - w) * shrink, (n - s) * shrink
    return (w + dx, s + dy, e - dx, n - dy)


# ------------------------------------------------------------------------------------------- helpers
def test_gdal_path() -> None:
    assert gdal_path("https://h/x/a.tif") == "/vsicurl/https://h/x/a.tif"
    assert gdal_path("http://127.0.0.1:9/a.tif?sig=1") == "/vsicurl/http://127.0.0.1:9/a.tif?sig=1"
    assert gdal_path("s3://bucket/key/a.tif") == "/vsis3/bucket/key/a.tif"
    assert gdal_path("gs://bucket/a.tif") == "/vsigs/bucket/a.tif"
    assert gdal_path("file:///data/a.tif") == "/data/a.tif"
    assert gdal_path("/data/a.tif") == "/data/a.tif"


# ------------------------------------------------------------------------------------------- search
def test_scene_fields_from_item_and_cog(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    port = cogs.folder / cogs.port
    items = [
        make_item(
            "S1A_IW_20171210T054359_DSC_RTC_PORT",
            {"vv": f"{range_srv.url}/{cogs.port}", "vh": f"{range_srv.url}/{cogs.port}"},
            footprint(port),
            "2017-12-10T05:43:59Z",
            platform="sentinel-1a",
        )
    ]
    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs))
        scenes, failures = find_stac_scenes(cfg)
    assert failures == []
    assert len(scenes) == 1
    s = scenes[0]
    with rasterio.open(port) as ds:
        crs, width, height, transform = ds.crs.to_string(), ds.width, ds.height, tuple(ds.transform)[:6]
    assert s.scene_id == "S1A_IW_20171210T054359_DSC_RTC_PORT"
    assert [b.uri for b in s.bands] == [f"/vsicurl/{range_srv.url}/{cogs.port}"] * 2
    assert s.polarisations == ("VV", "VH") and all(b.band == 1 for b in s.bands)
    assert s.acquired.isoformat() == "2017-12-10T05:43:59+00:00" and s.acquired_source == "stac"
    assert (s.sensor, s.mode, s.orbit_direction, s.product) == ("Sentinel-1A", "IW", "descending", "RTC")
    assert (s.scale, s.backscatter, s.scale_source) == (Scale.LINEAR_POWER, Backscatter.GAMMA0, "declared")
    assert s.backscatter_source == "stac:sar:product_type"  # the item says RTC
    assert (s.georef, s.crs, s.width, s.height) == (GeorefKind.AFFINE, crs, width, height)
    assert s.transform == pytest.approx(transform)
    assert s.pixel_size_m == pytest.approx(20.0, abs=0.5)
    assert s.nodata is None  # NaN nodata is a mask, not a value
    # every request to the STAC API and to the COG server carried our User-Agent
    assert stac.log and {r.user_agent for r in stac.log} == {USER_AGENT}  # type: ignore[attr-defined]
    assert range_srv.log and all(r.user_agent.startswith("sar-triplets/") for r in range_srv.log)  # type: ignore[attr-defined]
    assert all(r.status in (200, 206) for r in range_srv.log)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("product_type", "declared", "expect"),
    [
        ("GRD", None, (Backscatter.UNKNOWN, "none")),  # the item states no convention: no guess
        ("GRD", "sigma0", (Backscatter.SIGMA0, "declared")),
        ("RTC", "sigma0", (Backscatter.SIGMA0, "declared")),  # the region file wins
    ],
)
def test_backscatter_from_the_item_unless_declared(
    tmp_path: Path,
    cogs: Cogs,
    range_srv: LoopbackServer,
    product_type: str,
    declared: str | None,
    expect: tuple[Backscatter, str],
) -> None:
    port = cogs.folder / cogs.port
    item = make_item(
        "S1A_PORT", {"vv": f"{range_srv.url}/{cogs.port}"}, footprint(port), "2017-12-10T05:43:59Z"
    )
    item["properties"]["sar:product_type"] = product_type
    extra = {"backscatter": declared} if declared else {}
    with serve(StacHandler, **stac_server_attrs([item])) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs), polarisations=["VV"], **extra)
        (s,), failures = find_stac_scenes(cfg)
    assert failures == [] and (s.backscatter, s.backscatter_source) == expect


def test_opera_rtc_item_reads_utm_grid_and_scale(
    tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer
) -> None:
    """The real OPERA RTC-S1 crop (linear gamma0, NaN, EPSG:32754, 30 m) as a single-pol VH item."""
    opera = cogs.folder / cogs.opera
    geom = footprint(opera)
    items = [
        make_item(
            "OPERA_T009-019294-IW2_20240123",
            {"vh": f"{range_srv.url}/{cogs.opera}"},
            geom,
            "2024-01-23T08:47:48Z",
            orbit="ascending",
        )
    ]
    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, _bounds(geom), years=[2024], polarisations=["VH"])
        scenes, failures = find_stac_scenes(cfg)
    assert failures == []
    [s] = scenes
    assert (s.crs, s.width, s.height) == ("EPSG:32754", 350, 250)
    assert s.pixel_size_m == pytest.approx(30.0, abs=0.5)
    assert s.polarisations == ("VH",) and s.orbit_direction == "ascending"


def test_filters_dates_orbit_pols_coverage(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    port = cogs.folder / cogs.port
    href = f"{range_srv.url}/{cogs.port}"
    geom = footprint(port)
    region = port_bbox(cogs)
    w, s, e, n = region
    left_third = mapping(box(w - 0.01, s - 0.01, w + (e - w) / 3, n + 0.01))  # ~1/3 of the region
    items = [
        make_item("keep_dec", {"vv": href, "vh": href}, geom, "2017-12-10T05:43:59Z"),
        make_item("keep_jun", {"vv": href, "vh": href}, geom, "2017-06-01T05:43:59Z"),
        make_item("wrong_year", {"vv": href, "vh": href}, geom, "2018-01-05T05:43:59Z"),
        make_item("ascending", {"vv": href, "vh": href}, geom, "2017-07-01T17:30:00Z", orbit="ascending"),
        make_item("vv_only", {"vv": href}, geom, "2017-08-01T05:43:59Z"),
        make_item("partial", {"vv": href, "vh": href}, left_third, "2017-09-01T05:43:59Z"),
        make_item("other_coll", {"vv": href, "vh": href}, geom, "2017-10-01T05:43:59Z", collection="s1-grd"),
    ]
    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, region, orbit_direction="descending", min_coverage=0.5)
        scenes, failures = find_stac_scenes(cfg)
        assert [x.scene_id for x in scenes] == ["keep_jun", "keep_dec"]  # in acquisition order
        assert failures == []
        # without the orbit and coverage limits those items come back (the limits did the filtering)
        cfg = region_cfg(tmp_path, stac.url, region, min_coverage=0.2)
        ids = {x.scene_id for x in find_stac_scenes(cfg)[0]}
        assert ids == {"keep_dec", "keep_jun", "ascending", "partial"}
        # one polarisation: the VV-only item qualifies
        cfg = region_cfg(tmp_path, stac.url, region, polarisations=["VV"])
        ids = {x.scene_id for x in find_stac_scenes(cfg)[0]}
        assert ids == {"keep_dec", "keep_jun", "ascending", "vv_only"}
        # a date range instead of years
        cfg = region_cfg(tmp_path, stac.url, region, dates={"start": "2017-11-01", "end": "2018-01-31"})
        ids = {x.scene_id for x in find_stac_scenes(cfg)[0]}
        assert ids == {"keep_dec", "wrong_year"}
        # two years: one search each
        stac.log.clear()  # type: ignore[attr-defined]
        cfg = region_cfg(tmp_path, stac.url, region, years=[2017, 2018])
        ids = {x.scene_id for x in find_stac_scenes(cfg)[0]}
        assert ids == {"keep_dec", "keep_jun", "ascending", "wrong_year"}  # partial: min_coverage 0.5
        assert len([r for r in stac.log if r.path == "/search"]) == 2  # type: ignore[attr-defined]
        # the search sent the collection, the datetime interval and the region polygon
        searches = [r for r in stac.log if r.path == "/search"]  # type: ignore[attr-defined]
        assert searches and all(r.params["collections"] == [COLLECTION] for r in searches)
        assert all(r.params["intersects"]["type"] == "Polygon" for r in searches)
        assert searches[0].params["datetime"].startswith("2017-01-01T00:00:00")


def test_asset_mapping_and_query(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    """scenes.assets maps polarisations to other asset keys; scenes.query goes to the API."""
    href = f"{range_srv.url}/{cogs.port}"
    geom = footprint(cogs.folder / cogs.port)
    items = [
        make_item("a", {"VV_linear": href}, geom, "2017-12-10T05:43:59Z"),
        make_item("b", {"VV_linear": href}, geom, "2017-12-22T05:43:59Z", platform="SENTINEL-1B"),
    ]
    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs), polarisations=["VV"])
        assert find_stac_scenes(cfg)[0] == []  # the default key 'vv' is not there
        cfg = region_cfg(
            tmp_path,
            stac.url,
            port_bbox(cogs),
            polarisations=["VV"],
            assets={"VV": "VV_linear"},
            query={"platform": {"eq": "SENTINEL-1B"}},
        )
        scenes, _ = find_stac_scenes(cfg)
    assert [(s.scene_id, s.sensor) for s in scenes] == [("b", "Sentinel-1B")]


def test_ranking_max_scenes_and_pagination(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    """Best coverage first, then earliest; max_scenes; 7 items over 4 pages of 2 all reach the client."""
    href = f"{range_srv.url}/{cogs.port}"
    full = footprint(cogs.folder / cogs.port)
    region = port_bbox(cogs)
    w, s, e, n = region
    half = mapping(box(w - 0.01, s - 0.01, (w + e) / 2, n + 0.01))
    items = [
        make_item(f"full_{m:02d}", {"vv": href, "vh": href}, full, f"2017-{m:02d}-15T05:43:59Z")
        for m in (9, 3, 11, 5)
    ] + [
        make_item(f"half_{m:02d}", {"vv": href, "vh": href}, half, f"2017-{m:02d}-15T05:43:59Z")
        for m in (1, 2, 4)
    ]
    with serve(StacHandler, **stac_server_attrs(items, page_size=2)) as stac:
        cfg = region_cfg(tmp_path, stac.url, region, min_coverage=0.4)
        all_scenes, _ = find_stac_scenes(cfg)
        pages = [r for r in stac.log if r.path == "/search"]  # type: ignore[attr-defined]
        assert len(pages) == 4 and [r.params.get("token") for r in pages] == [None, "2", "4", "6"]
        assert len(all_scenes) == 7
        cfg = region_cfg(tmp_path, stac.url, region, min_coverage=0.4, max_scenes=3)
        best, _ = find_stac_scenes(cfg)
        # the three earliest full-coverage items, returned in acquisition order (not the half ones, earlier)
        assert [x.scene_id for x in best] == ["full_03", "full_05", "full_09"]
        cfg = region_cfg(tmp_path, stac.url, region, min_coverage=0.4, max_scenes=6)
        assert [x.scene_id for x in find_stac_scenes(cfg)[0]][:2] == ["half_01", "half_02"]
        # max_items stops the search (and the pages) early
        stac.log.clear()  # type: ignore[attr-defined]
        cfg = region_cfg(tmp_path, stac.url, region, min_coverage=0.4, max_items=3)
        assert len(find_stac_scenes(cfg)[0]) == 3
        assert len([r for r in stac.log if r.path == "/search"]) == 2  # type: ignore[attr-defined]


def test_get_pagination_next_link(tmp_path: Path) -> None:
    """The server's GET next links (token in the URL) page through too (pystac-client with method GET)."""
    from pystac_client import Client

    geom = mapping(box(4.0, 43.0, 5.0, 44.0))
    items = [
        make_item(f"i{k}", {"vv": "http://x/a.tif"}, geom, f"2017-0{k + 1}-01T00:00:00Z") for k in range(5)
    ]
    with serve(StacHandler, **stac_server_attrs(items, page_size=2)) as stac:
        client = Client.open(stac.url, headers={"User-Agent": USER_AGENT})
        got = [
            i.id
            for i in client.search(
                collections=[COLLECTION], bbox=[4.1, 43.1, 4.2, 43.2], method="GET"
            ).items()
        ]
        assert got == [f"i{k}" for k in range(5)]
        assert [r.method for r in stac.log if r.path == "/search"] == ["GET"] * 3  # type: ignore[attr-defined]


def test_broken_asset_is_a_failure_others_kept(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    href = f"{range_srv.url}/{cogs.port}"
    geom = footprint(cogs.folder / cogs.port)
    items = [
        make_item("good_a", {"vv": href}, geom, "2017-03-01T05:43:59Z"),
        make_item("missing", {"vv": f"{range_srv.url}/s1/nope.tif"}, geom, "2017-01-01T05:43:59Z"),
        make_item("good_b", {"vv": href}, geom, "2017-04-01T05:43:59Z"),
    ]
    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs), polarisations=["VV"], max_scenes=2)
        scenes, failures = find_stac_scenes(cfg)
    # the broken item ranked first (earliest); the next candidate took its place under max_scenes
    assert [s.scene_id for s in scenes] == ["good_a", "good_b"]
    assert len(failures) == 1
    f = failures[0]
    assert (f.uri, f.reason) == (f"/vsicurl/{range_srv.url}/s1/nope.tif", "unreadable")
    assert "missing" in f.message and "\n" not in f.message
    assert any(r.path == "/s1/nope.tif" and r.status == 404 for r in range_srv.log)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "tries"), [("500", 1 + stac_mod.SEARCH_RETRIES), ("400", 1), ("badjson", 1)]
)
def test_failing_search_raises_one_line(tmp_path: Path, cogs: Cogs, fault: str, tries: int) -> None:
    """Transient answers are retried (a bounded number of times), others fail at once; one line."""
    with serve(StacHandler, **stac_server_attrs([], fail_search=fault)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs))
        with pytest.raises(StacSearchError) as err:
            find_stac_scenes(cfg)
        searches = [r for r in stac.log if r.path == "/search"]  # type: ignore[attr-defined]
    msg = str(err.value)
    assert "\n" not in msg and stac.url in msg and "rerun" in msg
    assert len(searches) == tries
    if fault != "badjson":
        assert f"HTTP {fault}" in msg


def test_transient_search_errors_are_retried(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    href = f"{range_srv.url}/{cogs.port}"
    geom = footprint(cogs.folder / cogs.port)
    items = [make_item(f"i{k}", {"vv": href}, geom, f"2017-0{k + 1}-01T05:00:00Z") for k in range(3)]
    with serve(StacHandler, **stac_server_attrs(items, page_size=2, fail_next_searches=2)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs), polarisations=["VV"])
        scenes, failures = find_stac_scenes(cfg)
        statuses = [r.status for r in stac.log if r.path == "/search"]  # type: ignore[attr-defined]
    assert [s.scene_id for s in scenes] == ["i0", "i1", "i2"] and failures == []
    assert statuses == [503, 503, 200, 200]  # two refusals, then both pages


def test_unreachable_api_raises_one_line(tmp_path: Path, cogs: Cogs) -> None:
    with serve(StacHandler, **stac_server_attrs([])) as stac:
        url = stac.url  # the port is closed once the server stops
    cfg = region_cfg(tmp_path, url + "/", port_bbox(cogs))
    with pytest.raises(StacSearchError) as err:
        find_stac_scenes(cfg)
    assert "\n" not in str(err.value) and "scenes.url" in str(err.value)


def test_api_without_item_search_raises_one_line(tmp_path: Path, cogs: Cogs) -> None:
    """A catalogue that does not offer item search (e.g. a static catalogue) is refused in one line."""
    with serve(StacHandler, **stac_server_attrs([], conformance=[CORE])) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs))
        with pytest.raises(StacSearchError) as err:
            find_stac_scenes(cfg)
        assert not [r for r in stac.log if r.path == "/search"]  # type: ignore[attr-defined]
    assert "\n" not in str(err.value) and "DoesNotConformTo" in str(err.value)


def test_modifier_signs_asset_hrefs(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    """A pystac-client modifier (how Planetary Computer signing plugs in) rewrites the asset hrefs."""
    geom = footprint(cogs.folder / cogs.port)
    items = [
        make_item("signed", {"vv": f"{range_srv.url}/unsigned/port_vv.tif"}, geom, "2017-12-10T05:43:59Z")
    ]

    def sign(obj: Any) -> None:  # pystac-client calls it on each page (a dict) and on the items
        items = obj.get("features", []) if isinstance(obj, dict) else [obj]
        for item in items:
            assets = item["assets"] if isinstance(item, dict) else item.assets
            for a in assets.values():
                if isinstance(a, dict):
                    a["href"] = a["href"].replace("/unsigned/", "/s1/")
                else:
                    a.href = a.href.replace("/unsigned/", "/s1/")

    with serve(StacHandler, **stac_server_attrs(items)) as stac:
        cfg = region_cfg(tmp_path, stac.url, port_bbox(cogs), polarisations=["VV"])
        unsigned, fails = find_stac_scenes(cfg)
        assert unsigned == [] and [f.reason for f in fails] == ["unreadable"]
        signed, fails = find_stac_scenes(cfg, modifier=sign)
    assert fails == [] and signed[0].bands[0].uri == f"/vsicurl/{range_srv.url}/s1/port_vv.tif"


# -------------------------------------------------------------------------------------- end to end
def test_pipeline_end_to_end(tmp_path: Path, cogs: Cogs, range_srv: LoopbackServer) -> None:
    """A region file with a STAC scene source and the synthetic AEF tile, built by the Dask executor: every
    window is in the shards or the rejects, the manifest names every scene and its /vsicurl/ URIs, and
    every HTTP request carried our User-Agent."""
    from pipelines.executor import build

    url = range_srv.url
    items = [
        make_item(
            "S1A_PORT_20171210",
            {"vv": f"{url}/{cogs.port}"},
            footprint(cogs.folder / cogs.port),
            "2017-12-10T05:43:59Z",
        ),
        make_item(
            "S1A_CAMARGUE_20170309",
            {"vv": f"{url}/{cogs.camargue}"},
            footprint(cogs.folder / cogs.camargue),
            "2017-03-09T05:43:56Z",
        ),
        make_item(
            "S1A_CAMARGUE_20150309",
            {"vv": f"{url}/{cogs.camargue_2015}"},
            footprint(cogs.folder / cogs.camargue_2015),
            "2015-03-09T17:30:17Z",
            orbit="ascending",
        ),
        make_item(
            "S1A_BROKEN_20170601",
            {"vv": f"{url}/s1/gone.tif"},
            footprint(cogs.folder / cogs.port),
            "2017-06-01T05:43:59Z",
        ),
    ]
    with serve(StacHandler, **stac_server_attrs(items, page_size=2)) as stac:
        raw = {
            "name": "stac_e2e",
            "area": {"bbox": [4.48, 43.36, 4.86, 43.62]},  # both 2017 tiles, inside the synthetic AEF tile
            "years": [2017],
            "scenes": {
                "type": "stac",
                "url": stac.url,
                "collection": COLLECTION,
                "polarisations": ["VV"],
                "min_coverage": 0.0,
                "backscatter": "gamma0",  # the spatialist tiles are gamma0 RTC (here in linear power)
            },
            "embeddings": {"type": "cog", "root": str(SYNTHETIC_AEF), "synthetic": True, "grid": 4},
            "chip": {"size": 64, "stride": 64, "pixel_size_m": 20},
            "output": {"dir": str(tmp_path / "out")},
            "cache_dir": str(tmp_path / "cache"),
            "workers": 1,
        }
        region = tmp_path / "stac_e2e.yaml"
        region.write_text(yaml.safe_dump(raw))
        manifest = build(load_region(region), progress=False)
        stac_agents = {r.user_agent for r in stac.log}  # type: ignore[attr-defined]
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]
    scenes = {s["scene_id"]: s for s in manifest["scenes"]}
    assert set(scenes) == {"S1A_PORT_20171210", "S1A_CAMARGUE_20170309"}
    assert scenes["S1A_PORT_20171210"]["uris"] == [f"/vsicurl/{url}/{cogs.port}"]
    assert scenes["S1A_CAMARGUE_20170309"]["uris"] == [f"/vsicurl/{url}/{cogs.camargue}"]
    assert [(f["reason"], f["uri"]) for f in manifest["failures"]] == [
        ("unreadable", f"/vsicurl/{url}/s1/gone.tif")
    ]
    c = manifest["counts"]
    assert c["tasks_failed"] == 0 and c["windows"] > 0
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"]
    rows = sum(pq.read_metadata(out / f).num_rows for f in manifest["files"])
    rejected = sum(pq.read_metadata(out / f).num_rows for f in manifest["rejects_files"])
    assert rows == c["chips_kept"] > 0 and rejected == c["chips_rejected"]
    table = pq.read_table(
        [str(out / f) for f in manifest["files"]], columns=["scene_id", "source_uris", "source_scale"]
    )
    assert set(table["scene_id"].to_pylist()) == set(scenes)  # both scenes gave rows
    assert all(u[0].startswith(f"/vsicurl/{url}/") for u in table["source_uris"].to_pylist())
    assert set(table["source_scale"].to_pylist()) == {"linear_power"}
    # every request, to the STAC API and for the COG bytes (driver and workers), carried our User-Agent
    assert stac_agents == {USER_AGENT}
    cog_reqs = range_srv.log  # type: ignore[attr-defined]
    assert cog_reqs and all(r.user_agent.startswith("sar-triplets/") for r in cog_reqs)
    assert not [r for r in cog_reqs if r.status == 403]
    # the workers read pixels: ranged requests beyond the header reads of the search
    assert sum(1 for r in cog_reqs if r.range) > 4
