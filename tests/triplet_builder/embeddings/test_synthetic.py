"""The SYNTHETIC AlphaEarth stand-in: mirror layout, bottom-up, unit norms, deterministic, and
independent of the SAR pixels (a probe cannot read the water fraction from it)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from scipy import ndimage

from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import load_index
from triplet_builder.embeddings.quantize import NODATA, dequantize
from triplet_builder.embeddings.synthetic import generate, main

SCENE = (
    Path(__file__).parents[2] / "data/real/spatialist/S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
)
YEAR = 2017
DEMO = Path(__file__).parents[3] / "data/demo"
DEMO_SCENES_2017 = sorted((DEMO / "spatialist").glob("*_2017*_VV_*.tif"))
WATER_DB = -18.0  # the demo's water threshold (facts.water_threshold_db default, co-pol)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aef_synthetic")
    assert main(["--out", str(root), "--scenes", str(SCENE), "--years", str(YEAR), "--seed", "0"]) == 0
    return root


def _tile(root: Path) -> Path:
    files = sorted((root / str(YEAR) / "31N").glob("*.tiff"))
    assert len(files) == 1
    return files[0]


def _scene_points(step: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lon, lat and dB at a regular subset of the SAR pixel centres."""
    with rasterio.open(SCENE) as ds:
        db = ds.read(1)
        rows, cols = np.mgrid[0 : ds.height : step, 0 : ds.width : step]
        t = ds.transform
        x = t.c + (cols.ravel() + 0.5) * t.a
        y = t.f + (rows.ravel() + 0.5) * t.e
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat), db[rows.ravel(), cols.ravel()]


def test_layout_format_and_tags(generated: Path) -> None:
    tile = _tile(generated)
    assert re.fullmatch(r"[0-9a-z]{17}-\d{10}-\d{10}\.tiff", tile.name)
    with rasterio.open(tile) as ds:
        assert ds.count == 64 and ds.dtypes[0] == "int8" and ds.nodata == NODATA
        assert ds.crs.to_epsg() == 32631
        assert ds.transform.a == 10.0 and ds.transform.e == 10.0  # positive y pixel size: bottom-up
        assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0
        assert ds.descriptions == tuple(f"A{i:02d}" for i in range(64))
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        tags = ds.tags()
        assert tags["SYNTHETIC"] == "true"
        assert "not alphaearth data" in tags["DESCRIPTION"].lower()
        # the file covers the scene plus the margin
        with rasterio.open(SCENE) as sar:
            b = sar.bounds
        south, north = sorted((ds.bounds.bottom, ds.bounds.top))  # rasterio's "bottom" is the NORTH edge here
        assert ds.bounds.left <= b.left - 500 and ds.bounds.right >= b.right + 500
        assert south <= b.bottom - 500 and north >= b.top + 500
    assert tile.stat().st_size < 1_500_000
    gdf = load_index(generated)
    assert len(gdf) == 1 and gdf.iloc[0]["utm_zone"] == "31N" and gdf.iloc[0]["year"] == YEAR


def test_provider_reads_unit_vectors_over_the_whole_scene(generated: Path) -> None:
    lon, lat, _ = _scene_points()
    provider = CogEmbeddingProvider(str(generated), synthetic=True)
    codes, valid = provider.sample(lon, lat, YEAR)
    assert "SYNTHETIC" in provider.description
    assert valid.all()  # like the real product, nothing inside the scene is masked (no water mask)
    emb = dequantize(codes[valid])
    norms = np.linalg.norm(emb, axis=1)
    assert norms.min() >= 0.99 and norms.max() <= 1.01
    # the vectors vary in space (not one constant vector): some pairs are far apart
    assert (emb @ emb[0]).min() < 0.5
    # the point grid (spacing 60 m) reads each touched 512 px block once
    assert provider.stats["block_reads"] <= 4


def test_codes_do_not_depend_on_the_sar_pixels(generated: Path, tmp_path: Path) -> None:
    """The same grid with other backscatter values (water turned to land and back) gives identical codes."""
    with rasterio.open(SCENE) as ds:
        profile, db = ds.profile, ds.read(1)
    flipped = tmp_path / SCENE.name
    with rasterio.open(flipped, "w", **profile) as dst:
        dst.write((-30.0 - db).astype(db.dtype), 1)  # dark <-> bright
    (other,) = generate(tmp_path / "out", [flipped], [YEAR], seed=0, zlevel=1)
    with rasterio.open(_tile(generated)) as a, rasterio.open(other) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def _ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """R^2 on held-out data of a ridge (lambda = 1) linear probe with intercept (numpy least squares)."""
    a_fit = np.c_[x_fit, np.ones(len(x_fit))]
    w = np.linalg.solve(a_fit.T @ a_fit + np.eye(a_fit.shape[1]), a_fit.T @ y_fit)
    pred = np.c_[x_test, np.ones(len(x_test))] @ w
    return float(1.0 - ((y_test - pred) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())


def test_a_linear_probe_cannot_read_the_water_fraction_from_the_demo_anchors() -> None:
    """The committed demo stand-in holds no SAR information: a linear probe predicting each anchor's local
    water fraction (dB < -18 over the 5 x 5 SAR pixels, 100 m, around it) from its 64-d vector scores
    R^2 < 0.1 on held-out data. The probe is spatially held out (fit on the western halves of the two
    2017 demo scenes, scored on the eastern halves, and the reverse): a random split would let any smooth
    64-d field interpolate the water pattern between neighbouring anchors. On the earlier stand-in, made
    from the dB thresholds, this probe scored R^2 = 0.79 and 0.77."""
    provider = CogEmbeddingProvider(str(DEMO / "aef_synthetic"), synthetic=True)
    feats, water, west = [], [], []
    assert len(DEMO_SCENES_2017) == 2
    for path in DEMO_SCENES_2017:
        with rasterio.open(path) as ds:
            db, t = ds.read(1), ds.transform
            rows, cols = np.mgrid[2 : ds.height - 2 : 4, 2 : ds.width - 2 : 4]  # anchors every 80 m
            r, c = rows.ravel(), cols.ravel()
            lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(
                t.c + (c + 0.5) * t.a, t.f + (r + 0.5) * t.e
            )
        local = ndimage.uniform_filter((db < WATER_DB).astype(np.float64), 5, mode="nearest")[r, c]
        codes, ok = provider.sample(np.asarray(lon), np.asarray(lat), YEAR)
        assert ok.mean() > 0.9
        feats.append(dequantize(codes[ok]))
        water.append(local[ok])
        west.append(c[ok] < db.shape[1] / 2)
    x, y, w = np.concatenate(feats), np.concatenate(water), np.concatenate(west)
    assert y[w].std() > 0.2 and y[~w].std() > 0.2  # both halves hold water and land
    assert _ridge_r2(x[w], y[w], x[~w], y[~w]) < 0.1
    assert _ridge_r2(x[~w], y[~w], x[w], y[w]) < 0.1


def test_synthetic_files_need_the_synthetic_flag(generated: Path) -> None:
    lon, lat, _ = _scene_points(step=50)
    with pytest.raises(ValueError, match="SYNTHETIC"):
        CogEmbeddingProvider(str(generated)).sample(lon, lat, YEAR)


def test_same_seed_gives_identical_codes_and_other_seed_differs(generated: Path, tmp_path: Path) -> None:
    # zlevel=1 (fast) changes the file bytes, not the codes
    again = generate(tmp_path / "again", [SCENE], [YEAR], seed=0, zlevel=1)
    other = generate(tmp_path / "other", [SCENE], [YEAR], seed=1, zlevel=1)
    assert [p.name for p in again] == [_tile(generated).name]
    with rasterio.open(_tile(generated)) as a, rasterio.open(again[0]) as b, rasterio.open(other[0]) as c:
        first, second, third = a.read(), b.read(), c.read()
        assert a.transform == b.transform
    assert first.tobytes() == second.tobytes()
    assert not np.array_equal(first, third)
    np.testing.assert_array_equal(first == NODATA, third == NODATA)  # the mask is the scene footprint only


def test_cli_rejects_missing_scenes(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scenes", str(tmp_path / "nope.tif"), "--years", "2017"])


def test_rerun_with_another_seed_replaces_the_tile(tmp_path: Path) -> None:
    first = generate(tmp_path, [SCENE], [YEAR], seed=0, zlevel=1)
    second = generate(tmp_path, [SCENE], [YEAR], seed=2, zlevel=1)
    assert first[0].name != second[0].name and not first[0].exists()
    assert list(load_index(tmp_path)["path"].str.rsplit("/", n=1).str[-1]) == [second[0].name]


def test_real_tiles_are_refused(tmp_path: Path) -> None:
    with rasterio.open(SCENE) as ds:
        profile, db = ds.profile, ds.read(1)
    real_dir = tmp_path / "mixed" / str(YEAR) / "31N"
    real_dir.mkdir(parents=True)
    with rasterio.open(real_dir / "realtile-0000000000-0000000000.tiff", "w", **profile) as dst:
        dst.write(db, 1)
    with pytest.raises(ValueError, match="not a synthetic tile"):
        generate(tmp_path / "mixed", [SCENE], [YEAR])
