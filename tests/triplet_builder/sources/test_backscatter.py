"""The backscatter convention is derived from what the files state, with its source, and never guessed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import rasterio

from tests.conftest import OPERA, PORT_TILE, SPATIALIST
from triplet_builder.config import SceneSourceConfig
from triplet_builder.record import Backscatter
from triplet_builder.sources.local import find_scenes
from triplet_builder.sources.names import parse_name


def _one(path: Path, **kw: object) -> tuple[Backscatter, str]:
    (scene,), failures = find_scenes(SceneSourceConfig(paths=[str(path)], **kw))  # type: ignore[arg-type]
    assert failures == []
    return scene.backscatter, scene.backscatter_source


def test_pyrosar_norm_tiles_are_gamma0_from_the_file_name() -> None:
    """`_norm` in a pyroSAR/GAMMA name is the pixel-area normalisation: terrain-flattened gamma0."""
    tiles = sorted(SPATIALIST.glob("*_norm_db.tif"))
    assert len(tiles) == 3
    for t in tiles:
        assert _one(t) == (Backscatter.GAMMA0, "filename")


def test_opera_rtc_is_gamma0_from_the_file_name() -> None:
    assert _one(OPERA) == (Backscatter.GAMMA0, "filename")


def test_a_tile_that_states_nothing_is_unknown(tmp_path: Path) -> None:
    """The same pixels under a pyroSAR name without the normalisation step: nothing states the convention."""
    bare = tmp_path / PORT_TILE.name.replace("_norm_db", "_db")
    shutil.copy(PORT_TILE, bare)
    assert _one(bare) == (Backscatter.UNKNOWN, "none")


def test_tags_then_sidecar_then_region_file_take_precedence(tmp_path: Path) -> None:
    tagged = tmp_path / PORT_TILE.name
    shutil.copy(PORT_TILE, tagged)
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(BACKSCATTER_CONVENTION="Sigma Nought")
    assert _one(tagged) == (Backscatter.SIGMA0, "tags")  # the file's own tag beats its name
    (tmp_path / (tagged.name + ".json")).write_text(json.dumps({"backscatter": "beta0"}))
    assert _one(tagged) == (Backscatter.BETA0, "sidecar")
    assert _one(tagged, backscatter="sigma0") == (Backscatter.SIGMA0, "declared")


@pytest.mark.parametrize(
    ("name", "convention"),
    [
        ("S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif", "gamma0"),  # GAMMA, older pyroSAR
        ("S1A__IW___A_20180829T170656_VV_gamma0-rtc_db.tif", "gamma0"),  # current pyroSAR
        ("S1B__IW___A_20180829T170656_VH_sigma0-elp_db.tif", "sigma0"),  # SNAP, ellipsoid sigma0
        ("S1A__IW___A_20180829T170656_VV_grd_mli_geo_db.tif", None),  # says nothing: no guess
    ],
)
def test_pyrosar_name_steps_state_the_convention(name: str, convention: str | None) -> None:
    info = parse_name(name)
    assert info is not None and info.convention == "pyrosar" and info.backscatter == convention
