"""Licences come from the inputs; the card's metadata is written by huggingface_hub's card classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard

from schemas import COLUMN_DOCS, triplet_schema
from tests.conftest import OPERA, PORT_TILE, ROOT, port_scene
from triplet_builder.config import load_region
from triplet_builder.writers.card import render_card
from triplet_builder.writers.card_meta import features
from triplet_builder.writers.licences import licence_fields

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def _cfg(tmp_path: Path, **over: Any) -> Any:
    return load_region(DEMO, {"output.dir": str(tmp_path / "out"), **over})


def test_demo_inputs_give_copernicus_terms_and_the_mit_file_but_no_alphaearth(tmp_path: Path) -> None:
    # the demo's scenes alone (its land_cover / osm stages annotate no chip: tests/.../test_unused_sources.py)
    f = licence_fields(
        _cfg(tmp_path, stages=[]), [port_scene()]
    )  # synthetic embeddings: no AlphaEarth licence
    assert f["licenses"] == ["other", "mit"]
    assert f["licence_inputs"][0]["name"] == "Copernicus Sentinel data terms"
    assert f["licence_inputs"][1]["input"] == f"scene files in folder {PORT_TILE.parent.name}"
    assert str(ROOT) not in repr(f)  # folder names only, never the machine's paths


def test_alphaearth_worldcover_osm_and_an_unlicensed_label_file(tmp_path: Path) -> None:
    labels = tmp_path / "ships.geojson"
    labels.write_text('{"type": "FeatureCollection", "features": []}')
    cfg = _cfg(
        tmp_path,
        **{
            "embeddings.synthetic": False,
            "facts.labels": {"path": str(labels), "match": "none"},
            "stages": [
                {"name": "land_cover", "after": "facts", "config": {"url": "http://127.0.0.1:9"}},
                {"name": "osm", "config": {"source": "overpass"}},
            ],
        },
    )
    bands = tuple(dataclasses.replace(b, uri=str(OPERA)) for b in port_scene().bands)
    scene = dataclasses.replace(port_scene(scene_id=OPERA.stem), bands=bands)
    f = licence_fields(cfg, [scene], {})
    by_input = {e["input"]: e["license"] for e in f["licence_inputs"]}
    assert by_input["Sentinel-1 scenes"] == "other"
    assert by_input["NASA/JPL OPERA RTC-S1 products"] == "other"
    assert by_input[f"scene files in folder {OPERA.parent.name}"] == "unknown"  # no licence file there
    assert by_input["AlphaEarth Foundations Satellite Embedding V1"] == "cc-by-4.0"
    assert by_input["label file ships.geojson"] == "unknown"
    assert by_input["ESA WorldCover"] == "cc-by-4.0"
    assert by_input["OpenStreetMap"] == "odbl"
    assert f["licenses"] == ["other", "unknown", "cc-by-4.0", "odbl"]  # each id once, input order


def _front(text: str) -> dict[str, Any]:
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


def test_card_metadata_is_hub_card_data_with_licence_terms_features_and_citations() -> None:
    m: dict[str, Any] = {
        "rows": {"train": 1200, "test": 30},
        "licenses": ["other", "cc-by-4.0", "odbl"],
        "licence_inputs": [
            {
                "input": "Sentinel-1 scenes",
                "license": "other",
                "name": "Copernicus Sentinel data terms",
                "link": "https://sentinels.copernicus.eu/x",
            },
            {"input": "OpenStreetMap", "license": "odbl", "name": "ODbL 1.0", "link": None},
        ],
        "config_hash": "abc123",
        "region_file": "pipelines/regions/demo.yaml",
        "rejects_files": ["rejects/rejects-00000.parquet"],
        "metadata": {"file": "metadata.parquet"},
    }
    text = render_card(m, COLUMN_DOCS)
    card = DatasetCard(text)  # the hub's own parser reads it back
    data = card.data.to_dict()
    assert data["license"] == ["other", "cc-by-4.0", "odbl"]
    assert data["license_name"] == "copernicus-sentinel-data-terms"  # an id, as the hub asks
    assert data["license_link"] == "https://sentinels.copernicus.eu/x"
    assert data["annotations_creators"] == ["machine-generated"]
    assert data["size_categories"] == ["1K<n<10K"]
    assert data["source_datasets"] == ["original", "extended|Sentinel-1 scenes", "extended|OpenStreetMap"]
    assert [c["config_name"] for c in data["configs"]] == ["default", "metadata", "rejects"]
    assert data["dataset_info"]["splits"] == [
        {"name": "train", "num_examples": 1200},
        {"name": "test", "num_examples": 30},
    ]
    assert _front(text)["configs"] == data["configs"]
    body = card.text
    assert "`triplet-builder build pipelines/regions/demo.yaml`" in body and "`abc123`" in body
    assert "| OpenStreetMap | `odbl` | ODbL 1.0 |" in body
    for key in ("arXiv:2602.19190", "arXiv:2507.22291", "Major TOM", "OpenStreetMap contributors"):
        assert key in body.split("## Citation", 1)[1]


def test_features_equal_what_datasets_writes_for_the_row_schema() -> None:
    import datasets  # the reference implementation (test extra): the hub reads what it writes

    assert features() == datasets.Features.from_arrow_schema(triplet_schema())._to_yaml_list()
