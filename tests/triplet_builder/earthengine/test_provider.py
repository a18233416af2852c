"""The AlphaEarth provider over Earth Engine (real `ee` client, loopback server serving the REAL window)
gives exactly the codes of the COG provider reading the same window from a mirror folder."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests.servers import LoopbackServer
from tests.servers.earthengine import pixel_requests
from tests.triplet_builder.earthengine.conftest import YEAR, settings_for, window_pixel_centres
from tests.virtual_scene import virtual_scene
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.earthengine import EarthEngineEmbeddingProvider, cluster_points, lattice
from triplet_builder.embeddings.quantize import NODATA, dequantize
from triplet_builder.record import (
    Anchors,
    ChipRecord,
    SceneRef,
    Window,
)
from triplet_builder.stages.base import Stats
from triplet_builder.stages.embed import Embed, EmbeddingProvider, make_provider


def test_every_pixel_equals_the_cog_provider_and_the_file(
    server: LoopbackServer, mirror: Path, tmp_path: Path
) -> None:
    lon, lat, raw = window_pixel_centres()
    # plus points outside the window (no data there): invalid for both, never zeros
    lon = np.append(lon, [lon.min() - 0.001, lon.max() + 0.01])
    lat = np.append(lat, [lat.min(), lat.max()])
    ee_codes, ee_valid = EarthEngineEmbeddingProvider(settings_for(server, tmp_path)).sample(lon, lat, YEAR)
    cog_codes, cog_valid = CogEmbeddingProvider(str(mirror)).sample(lon, lat, YEAR)
    np.testing.assert_array_equal(ee_valid, cog_valid)
    np.testing.assert_array_equal(ee_codes, cog_codes)
    assert ee_valid[:100].all() and not ee_valid[100:].any()
    np.testing.assert_array_equal(ee_codes[:100], raw)  # and both equal the file's codes
    assert (ee_codes[100:] == NODATA).all()
    norms = np.linalg.norm(dequantize(ee_codes[:100]), axis=1)
    assert norms.min() > 0.99 and norms.max() < 1.01


def _window_scene() -> SceneRef:
    """A virtual 10 m scene over the real window (EPSG:32613), so a chip covers it exactly."""
    return virtual_scene(
        scene_id="virtual-window",
        uri="ee://none",
        acquired=datetime(YEAR, 6, 1, tzinfo=timezone.utc),
        crs="EPSG:32613",
        width=10,
        height=10,
        pixel_size_m=10.0,
        transform=(10.0, 0.0, 418080.0, 0.0, -10.0, 4423780.0),
    )


def test_same_chip_same_anchors_through_the_embed_stage(
    server: LoopbackServer, mirror: Path, tmp_path: Path
) -> None:
    scene = _window_scene()
    windows = [Window(0, 0, 10, 10, 10, 10), Window(2, 3, 6, 6, 6, 6)]
    anchors: dict[str, list[Anchors | None]] = {}
    providers: dict[str, EmbeddingProvider] = {
        "ee": EarthEngineEmbeddingProvider(settings_for(server, tmp_path)),
        "cog": CogEmbeddingProvider(str(mirror)),
    }
    for name, provider in providers.items():
        stats = Stats()
        recs = [ChipRecord(f"c{i}", scene, w) for i, w in enumerate(windows)]
        out = list(Embed(provider, grid=4).run(recs, stats))
        anchors[name] = [r.anchors for r in out]
        if name == "ee":
            extra = stats["embed"].extra
            assert extra["ee_requests"] == 1 and extra["ee_bytes"] > 0  # both chips: one grid, one request
    for a, b in zip(anchors["ee"], anchors["cog"], strict=True):
        assert a is not None and b is not None
        assert a.valid.all()
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.lonlat, b.lonlat)
    first = anchors["ee"][0]
    assert first is not None and first.source == "earthengine:GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
    assert first.synthetic is False


def test_chips_far_apart_are_separate_small_requests(server: LoopbackServer, tmp_path: Path) -> None:
    lon, lat, _ = window_pixel_centres()
    far_lon, far_lat = lon + 0.2, lat + 0.1  # about 20 km away, same zone: no data there
    provider = EarthEngineEmbeddingProvider(settings_for(server, tmp_path))
    provider.sample(np.r_[lon, far_lon], np.r_[lat, far_lat], YEAR)
    sizes = sorted(
        (r.body["grid"]["dimensions"]["width"], r.body["grid"]["dimensions"]["height"])
        for r in pixel_requests(server)
        if r.body
    )
    assert sizes == [(10, 10), (10, 10)]  # not one 1700 x 1100 grid between them


def test_points_in_two_zones_use_two_utm_grids(server: LoopbackServer, tmp_path: Path) -> None:
    provider = EarthEngineEmbeddingProvider(settings_for(server, tmp_path))
    codes, valid = provider.sample(np.array([-102.01, -101.99]), np.array([40.0, 40.0]), YEAR)
    crs = sorted(r.body["grid"]["crsCode"] for r in pixel_requests(server) if r.body)
    assert crs == ["EPSG:32613", "EPSG:32614"]
    assert not valid.any() and (codes == NODATA).all()


def test_cluster_points_respects_limits_and_covers_every_point() -> None:
    rng = np.random.default_rng(0)
    ix = np.r_[rng.integers(0, 300, 500), rng.integers(5000, 5100, 200)]
    iy = np.r_[rng.integers(0, 300, 500), rng.integers(0, 100, 200)]
    clusters = cluster_points(ix, iy, max_pixels=200 * 200)
    members = np.sort(np.concatenate([c.members for c in clusters]))
    np.testing.assert_array_equal(members, np.arange(ix.size))
    for c in clusters:
        assert c.width * c.height <= 200 * 200
        assert (ix[c.members] >= c.ix0).all() and (ix[c.members] <= c.ix1).all()
        assert (iy[c.members] >= c.iy0).all() and (iy[c.members] <= c.iy1).all()
    assert not any(c.ix0 < 5000 <= c.ix1 for c in clusters)  # the two clumps never share a grid


def test_provider_pickles_and_works_after(server: LoopbackServer, tmp_path: Path) -> None:
    provider = EarthEngineEmbeddingProvider(settings_for(server, tmp_path))
    lon, lat, raw = window_pixel_centres()
    provider.sample(lon[:3], lat[:3], YEAR)
    clone = pickle.loads(pickle.dumps(provider))
    codes, valid = clone.sample(lon, lat, YEAR)
    assert valid.all()
    np.testing.assert_array_equal(codes, raw)


def test_make_provider_builds_the_earthengine_provider(tmp_path: Path) -> None:
    from triplet_builder.config import EarthEngineConfig, EmbeddingConfig

    p = make_provider(
        EmbeddingConfig(type="earthengine"),
        earthengine=EarthEngineConfig(url="http://127.0.0.1:1", max_concurrent=3),
        cache_dir=tmp_path,
    )
    assert isinstance(p, EarthEngineEmbeddingProvider)
    assert p.settings.endpoint == "http://127.0.0.1:1" and p.settings.max_concurrent == 3
    assert p.settings.cache_dir == str(tmp_path / "earthengine")
    default = make_provider(EmbeddingConfig(type="earthengine"))
    assert isinstance(default, EarthEngineEmbeddingProvider)
    assert default.settings.endpoint == "https://earthengine-highvolume.googleapis.com"


@pytest.mark.parametrize("year", [2023])
def test_a_year_without_images_is_all_invalid(server: LoopbackServer, tmp_path: Path, year: int) -> None:
    lon, lat, _ = window_pixel_centres()
    codes, valid = EarthEngineEmbeddingProvider(settings_for(server, tmp_path)).sample(lon, lat, year)
    assert not valid.any() and (codes == NODATA).all()


def test_lattice_is_the_coarsest_regular_step() -> None:
    assert lattice(np.array([5, 21, 37, 21])) == (5, 16)
    assert lattice(np.array([5, 21, 38])) == (5, 1)  # one point off the lattice: the dense grid
    assert lattice(np.array([7])) == (7, 1)


def test_anchors_of_aligned_chips_are_fetched_as_a_lattice_not_a_dense_grid(tmp_path: Path) -> None:
    """16 x 16 anchors of 2 x 2 chips of 256 px on a 10 m UTM grid lie every 16th pixel (on pixel edges):
    one request of the 32 x 32 lattice, pixel centres on the 10 m pixels holding the anchors."""
    from pyproj import Transformer

    from triplet_builder.stages.embed import anchor_positions

    pos = anchor_positions(16)
    x0, y0 = 600_000.0, 4_800_000.0  # a chip-grid origin on 10 m edges (UTM 31N)
    xs, ys = [], []
    for r in range(2):
        for c in range(2):
            xs.append(x0 + (c * 256 + pos[:, 1] * 256) * 10)
            ys.append(y0 - (r * 256 + pos[:, 0] * 256) * 10)
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(
        np.concatenate(xs), np.concatenate(ys)
    )
    from types import SimpleNamespace

    server = SimpleNamespace(url="http://127.0.0.1:9")  # planning makes no request
    provider = EarthEngineEmbeddingProvider(settings_for(server, tmp_path))  # type: ignore[arg-type]
    plan = provider.plan(np.asarray(lon), np.asarray(lat), YEAR)
    assert len(plan) == 1
    req, idx, rc = plan[0]
    assert (req.grid.width, req.grid.height) == (32, 32) and idx.size == 1024
    a, _, left, _, e, top = req.grid.transform
    assert (a, e) == (160.0, -160.0)
    # every requested pixel centre is the centre of a 10 m pixel, and each anchor's 10 m pixel is
    # the one east / north of its edge
    assert ((left + a / 2) - 5) % 10 == 0 and ((top + e / 2) - 5) % 10 == 0
    cx = left + (rc[:, 1] + 0.5) * a
    cy = top + (rc[:, 0] + 0.5) * e
    ax, ay = np.concatenate(xs)[idx], np.concatenate(ys)[idx]
    assert np.all((cx - ax > 0) & (cx - ax < 10)) and np.all((cy - ay > 0) & (cy - ay < 10))
