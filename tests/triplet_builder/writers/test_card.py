"""The dataset card (README.md) and the manifest writer."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from schemas import COLUMN_DOCS
from triplet_builder.writers.card import ALPHAEARTH_ATTRIBUTION, write_card
from triplet_builder.writers.manifest import ManifestError, read_manifest, redact, write_manifest

SENTENCE = "The AlphaEarth Foundations Satellite Embedding dataset is produced by Google and Google DeepMind."


def _manifest(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "rows": {"train": 120, "validation": 0, "test": 30},
        "rejects": 14,
        "pipeline_version": "0.1.0",
        "config_hash": "0123456789abcdef",
        "schema_version": "1.0.0",
        "region": {"name": "camargue", "bbox": [4.4, 43.3, 4.9, 43.7]},
        "years": [2017, 2015, 2017],
        "sources": ["spatialist Sentinel-1 GRD tiles", {"name": "AlphaEarth COG mirror", "year": 2017}],
        "licenses": ["cc-by-4.0"],
        "attributions": ["Contains data from NASA/JPL OPERA."],
        "synthetic_embeddings": False,
        "stretch": {"mode": "fixed", "min_db": -25.0, "max_db": 5.0},
    }
    m.update(over)
    return m


def _front_matter(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


def test_front_matter_parses_and_lists_existing_splits(tmp_path: Path) -> None:
    path = write_card(tmp_path, _manifest(), COLUMN_DOCS)
    assert path == tmp_path / "README.md"
    meta = _front_matter(path.read_text())
    assert meta["license"] == "cc-by-4.0"
    assert meta["task_categories"] == ["image-to-text", "visual-question-answering"]
    assert set(meta["tags"]) >= {"sar", "sentinel-1", "remote-sensing", "alphaearth", "geoparquet"}
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.parquet"},
                {"split": "test", "path": "data/test-*.parquet"},
            ],
            "default": True,
        }
    ]  # no metadata / rejects configs: this manifest has neither
    with_both = {
        **_manifest(),
        "metadata": {"file": "metadata.parquet"},
        "rejects_files": ["rejects/r.parquet"],
    }
    meta = _front_matter(write_card(tmp_path, with_both, COLUMN_DOCS).read_text())
    assert meta["configs"][1:] == [
        {"config_name": "metadata", "data_files": "metadata.parquet"},
        {"config_name": "rejects", "data_files": "rejects/*.parquet"},
    ]
    assert meta["pretty_name"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_body_counts_build_info_columns_and_formulas(tmp_path: Path) -> None:
    text = write_card(tmp_path, _manifest(), COLUMN_DOCS).read_text()
    body = text.split("\n---\n", 1)[1]
    assert "| train | 120 |" in body and "| test | 30 |" in body and "| **total** | 150 |" in body
    assert "14 chips were rejected" in body
    assert "`0.1.0`" in body and "`0123456789abcdef`" in body and "camargue" in body
    for name, doc in COLUMN_DOCS.items():
        row = next(line for line in body.splitlines() if line.startswith(f"| `{name}` |"))
        assert doc.split()[0] in row
    # a doc holding '|' must not break the table
    chip_row = next(line for line in body.splitlines() if line.startswith("| `chip_id` |"))
    assert len(re.findall(r"(?<!\\)\|", chip_row)) == 3 and "\\|" in chip_row
    assert "dB = stretch_min_db[c] + code / 255 * (stretch_max_db[c] - stretch_min_db[c])" in body
    assert "np.sign(q) * (q.astype(np.float32) / 127.5) ** 2" in body
    assert "spatial" in body.lower()


def test_attributions_always_present(tmp_path: Path) -> None:
    assert ALPHAEARTH_ATTRIBUTION == SENTENCE
    for synthetic in (False, True):
        text = write_card(tmp_path, _manifest(synthetic_embeddings=synthetic), COLUMN_DOCS).read_text()
        assert SENTENCE in text
        assert "Contains modified Copernicus Sentinel data 2015, 2017" in text
        assert "Contains data from NASA/JPL OPERA." in text


def test_synthetic_warning_iff_flag(tmp_path: Path) -> None:
    plain = write_card(tmp_path / "a", _manifest(), COLUMN_DOCS).read_text()
    synth = write_card(tmp_path / "b", _manifest(synthetic_embeddings=True), COLUMN_DOCS).read_text()
    marker = "SYNTHETIC EMBEDDINGS"
    assert marker not in plain and "NOT AlphaEarth" not in plain
    assert marker in synth and "NOT AlphaEarth" in synth and "demonstration only" in synth
    body = synth.split("\n---\n", 1)[1]
    assert body.index(marker) < body.index("## Summary")  # at the top


def test_license_default_and_several(tmp_path: Path) -> None:
    m = _manifest()
    del m["licenses"]
    # no licences stated: `unknown`, never a fixed string (it was cc-by-4.0 before the licences came
    # from the inputs, writers/licences.py)
    assert _front_matter(write_card(tmp_path, m, COLUMN_DOCS).read_text())["license"] == "unknown"
    m = _manifest(licenses=["cc-by-4.0", "apache-2.0"])
    assert _front_matter(write_card(tmp_path, m, COLUMN_DOCS).read_text())["license"] == [
        "cc-by-4.0",
        "apache-2.0",
    ]


# ---- manifest -------------------------------------------------------------------------------------


def test_redact_replaces_secret_keys_deeply_and_copies() -> None:
    src: dict[str, Any] = {
        "llm": {"model": "gpt-x", "api_key": "sk-123", "Auth_Token": "t", "prompt_tokens": 1234},
        "earthengine": {"service_account_credentials": {"private": "pem"}, "project": "p"},
        "runs": [{"db_password": "hunter2", "rows": 5}, "SECRET_in_value_only"],
        "client_secret": ["a", "b"],
        "keys_seen": None,
    }
    out = redact(src)
    assert out["llm"] == {
        "model": "gpt-x",
        "api_key": "<redacted>",
        "Auth_Token": "<redacted>",
        "prompt_tokens": 1234,
    }
    assert out["earthengine"] == {"service_account_credentials": "<redacted>", "project": "p"}
    assert out["runs"] == [{"db_password": "<redacted>", "rows": 5}, "SECRET_in_value_only"]
    assert out["client_secret"] == "<redacted>" and out["keys_seen"] is None
    assert src["llm"]["api_key"] == "sk-123"  # the input is untouched
    out["runs"][0]["rows"] = 6
    assert src["runs"][0]["rows"] == 5


def test_write_and_read_manifest(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    m = {
        "rows": {"train": np.int64(3)},
        "created": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "out": tmp_path / "x",
        "llm": {"api_key": "sk-live"},
        "b": 1,
        "a": 2,
    }
    path = write_manifest(tmp_path, m)
    text = path.read_text()
    assert "sk-live" not in text and "<redacted>" in text
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    back = read_manifest(tmp_path)
    assert back is not None
    assert back["rows"] == {"train": 3} and back["created"] == "2024-01-02T03:04:05+00:00"
    assert back["out"] == (tmp_path / "x").as_posix()
    assert not list(tmp_path.glob(".*.tmp"))

    path.write_text("{ half")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        write_manifest(tmp_path, {"x": object()})
    assert path.read_text() == "{ half"  # a failed write leaves the old file alone


def test_the_card_states_the_box_frame_from_the_build_config(tmp_path: Path) -> None:
    config = {
        "chip": {"size": 64},
        "facts": {"cfar": {"max_extent_px": 40, "guard": 2, "train": 8}},
        "output": {"backscatter_column": False},
    }
    text = write_card(tmp_path, _manifest(config=config), COLUMN_DOCS).read_text()
    assert "pixel coordinates of the 64 x 64 image" in text and "504 / 64 = 7.875" in text
    assert "50 px context" in text and "backscatter_db` is null in this build" in text
    config["chip"]["size"] = 128
    config["output"]["backscatter_column"] = True
    text = write_card(tmp_path, _manifest(config=config), COLUMN_DOCS).read_text()
    assert "128 x 128 image" in text and "504 / 128 = 3.9375" in text and "zlib-compressed" in text
    text = write_card(tmp_path, _manifest(), COLUMN_DOCS).read_text()  # no config: said, not guessed
    assert "frame of the boxes is not stated here" in text


def test_the_card_names_the_plugins_of_the_build_and_their_unchecked_sections(tmp_path: Path) -> None:
    plugins = [
        {
            "stage": "landcover_fractions",
            "ref": "landcover_fractions",
            "after": "facts",
            "sections": ["landcover_fractions"],
        }
    ]
    body = write_card(tmp_path, _manifest(plugins=plugins), COLUMN_DOCS).read_text()
    assert (
        "- `landcover_fractions` (`landcover_fractions`), after `facts`: adds `facts.ext.landcover_fractions`"
        in body
    )
    assert "The text is not checked against the `facts.ext` sections" in body
    for plain in (_manifest(), _manifest(plugins=[])):
        body = write_card(tmp_path, plain, COLUMN_DOCS).read_text()
        assert "Extra stages" not in body and "facts.ext" not in body
