"""Portable names of paths (triplet_builder/portable.py): no folder of the building machine reaches a row,
the manifest or the config hash; URLs and product ids are kept as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from triplet_builder.config import load_region
from triplet_builder.portable import portable_config, portable_uri, scrub_paths

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("pipelines/regions/../../data/demo/spatialist/a_db.tif", "a_db.tif"),
        ("/home/someone/data/a_db.tif", "a_db.tif"),
        ("a_db.tif", "a_db.tif"),
        ("../../data/demo/spatialist/*.tif", "*.tif"),
        ("/data/S1A_X.SAFE/measurement/s1a-vv.tiff", "S1A_X.SAFE/measurement/s1a-vv.tiff"),
        (
            "/vsizip//data/S1A_X.zip/S1A_X.SAFE/measurement/s1a-vv.tiff",
            "S1A_X.zip/S1A_X.SAFE/measurement/s1a-vv.tiff",
        ),
        (
            "SENTINEL1_CALIB:UNCALIB:/data/S1A_X.SAFE/manifest.safe:IW_VV:AMPLITUDE",
            "SENTINEL1_CALIB:UNCALIB:S1A_X.SAFE/manifest.safe:IW_VV:AMPLITUDE",
        ),
        (
            "https://data.source.coop/tge-labs/aef/v1/annual",
            "https://data.source.coop/tge-labs/aef/v1/annual",
        ),
        ("s3://bucket/key/a.tif", "s3://bucket/key/a.tif"),
        ("earthengine://COPERNICUS/S1_GRD/S1A_IW_X", "earthengine://COPERNICUS/S1_GRD/S1A_IW_X"),
    ],
)
def test_portable_uri(uri: str, name: str) -> None:
    assert portable_uri(uri) == name


def test_scrub_paths_keeps_file_names_and_urls() -> None:
    msg = "scene a (/home/u/data/a.tif), task 3: RasterioIOError: ../x/b.tif: read failed; see https://h.org/p/q"
    assert (
        scrub_paths(msg)
        == "scene a (a.tif), task 3: RasterioIOError: b.tif: read failed; see https://h.org/p/q"
    )


def test_config_hash_is_the_same_for_absolute_and_relative_paths_in_the_region_file(tmp_path: Path) -> None:
    """Today the hash is taken on the paths as written: an absolute form gives another hash."""
    text = DEMO.read_text()
    absolute = text.replace("../../data/demo", str(ROOT / "data" / "demo"))
    assert absolute != text
    region = tmp_path / "abs.yaml"
    region.write_text(absolute.replace("../../out/demo", "out"))
    assert load_region(region).config_hash() == load_region(DEMO).config_hash()
    d = portable_config(load_region(region).model_dump(mode="json"))
    assert str(ROOT) not in str(d) and str(tmp_path) not in str(d)
