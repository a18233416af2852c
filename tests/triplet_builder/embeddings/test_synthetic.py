"""The SYNTHETIC AlphaEarth stand-in: mirror layout, bottom-up, unit norms, tied to the SAR, deterministic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import load_index
from triplet_builder.embeddings.quantize import NODATA, dequantize
from triplet_builder.embeddings.synthetic import generate, main

SCENE = (
    Path(__file__).parents[2] / "data/real/spatialist/S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
)
YEAR = 2017


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


def test_provider_reads_unit_vectors_tied_to_the_sar(generated: Path) -> None:
    lon, lat, db = _scene_points()
    provider = CogEmbeddingProvider(str(generated), synthetic=True)
    codes, valid = provider.sample(lon, lat, YEAR)
    assert "SYNTHETIC" in provider.description
    assert valid.mean() > 0.8
    emb = dequantize(codes[valid])
    norms = np.linalg.norm(emb, axis=1)
    assert norms.min() >= 0.99 and norms.max() <= 1.01
    # open water is masked: the invalid points inside the scene are dark in the SAR
    assert (~valid).any() and np.median(db[~valid]) < -18
    # embeddings correlate with the surface: water points are closer to the water centroid than land points
    water, land = emb[db[valid] < -20], emb[(db[valid] > -12) & (db[valid] < -5)]
    centroid = water.mean(0) / np.linalg.norm(water.mean(0))
    assert (water @ centroid).mean() > (land @ centroid).mean() + 0.3
    # the point grid (spacing 60 m) reads each touched 512 px block once
    assert provider.stats["block_reads"] <= 4


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
    np.testing.assert_array_equal(first == NODATA, third == NODATA)  # the mask comes from the SAR only


def test_cli_rejects_missing_scenes(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scenes", str(tmp_path / "nope.tif"), "--years", "2017"])


def test_rerun_with_another_seed_replaces_the_tile(tmp_path: Path) -> None:
    first = generate(tmp_path, [SCENE], [YEAR], seed=0, zlevel=1)
    second = generate(tmp_path, [SCENE], [YEAR], seed=2, zlevel=1)
    assert first[0].name != second[0].name and not first[0].exists()
    assert list(load_index(tmp_path)["path"].str.rsplit("/", n=1).str[-1]) == [second[0].name]


def test_linear_scenes_and_real_tiles_are_refused(tmp_path: Path) -> None:
    with rasterio.open(SCENE) as ds:
        profile, db = ds.profile, ds.read(1)
    linear = tmp_path / "linear_20171210T054359.tif"
    with rasterio.open(linear, "w", **profile) as dst:
        dst.write(10 ** (db / 10), 1)
    with pytest.raises(ValueError, match="dB"):
        generate(tmp_path / "out", [linear], [YEAR])
    real_dir = tmp_path / "mixed" / str(YEAR) / "31N"
    real_dir.mkdir(parents=True)
    with rasterio.open(real_dir / "realtile-0000000000-0000000000.tiff", "w", **profile) as dst:
        dst.write(db, 1)
    with pytest.raises(ValueError, match="not a synthetic tile"):
        generate(tmp_path / "mixed", [SCENE], [YEAR])
