"""The region file's `facts.labels`: the label file is read and checked when the config loads, so a
bad column mapping stops `validate` and `build` in one line before any scene is planned or tile read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from tests.conftest import ROOT
from triplet_builder.config import ConfigError, load_region

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def region(tmp_path: Path, labels: dict[str, object]) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(tmp_path / "out")
    raw["facts"] = {"labels": labels}
    p = tmp_path / "region.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.fixture
def gfw_csv(tmp_path: Path) -> Path:
    p = tmp_path / "gfw.csv"
    pd.DataFrame(
        {"timestamp": ["2017-12-10T05:44:10Z"], "lat": [43.38], "lon": [4.81], "length_m": [40.0]}
    ).to_csv(p, index=False)
    return p


def test_columns_match_and_tolerance_load(gfw_csv: Path, tmp_path: Path) -> None:
    cfg = load_region(
        region(
            tmp_path,
            {"path": gfw_csv.name, "columns": {"time": "timestamp", "class": None}, "time_tolerance_s": 60},
        )
    )
    lc = cfg.facts.labels
    assert lc is not None and lc.match == "auto" and lc.time_tolerance_s == 60
    assert lc.columns.mapping()["time"] == "timestamp" and Path(lc.path) == gfw_csv
    assert cfg.model_dump(mode="json")["facts"]["labels"]["columns"]["class"] is None  # as the file spells it
    default = load_region(region(tmp_path, {"path": str(gfw_csv)})).facts.labels
    assert default is not None and default.time_tolerance_s == 600.0
    # a different tolerance is a different dataset
    assert cfg.config_hash() != load_region(region(tmp_path, {"path": str(gfw_csv)})).config_hash()


@pytest.mark.parametrize(
    ("labels", "needle"),
    [
        (
            {"columns": {"lat": "y"}},
            r"column 'y' \(facts.labels.columns.lat\) not found; the file's columns are",
        ),
        ({"match": "scene_id"}, "match: scene_id but no scene id column"),
        ({"columns": {"heading": "x"}}, "facts.labels.columns.heading"),
        ({"match": "sometimes"}, "facts.labels.match"),
        ({"time_tolerance_s": -1}, "facts.labels.time_tolerance_s"),
        ({"class_column": "a", "columns": {"class": "b"}}, "set the class column once"),
    ],
)
def test_bad_label_config_is_one_line_before_any_work(
    gfw_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: dict[str, object], needle: str
) -> None:
    path = region(tmp_path, {"path": str(gfw_csv), **labels})
    with pytest.raises(ConfigError, match=needle) as e:
        load_region(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    for command in ("validate", "build"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing planned, read or written


def test_validate_counts_the_labels(
    gfw_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11 s after the port scene's start: matched by time to the port scene, inside its chips."""
    assert main(["validate", str(region(tmp_path, {"path": str(gfw_csv)}))]) == 0
    out = capsys.readouterr().out
    assert "labels gfw.csv: 1, 1 in chips, 0 matched outside the chips, 0 unmatched (match: time)" in out
    assert main(["validate", str(region(tmp_path, {"path": str(gfw_csv), "time_tolerance_s": 10}))]) == 0
    assert (
        "labels gfw.csv: 1, 0 in chips, 0 matched outside the chips, 1 unmatched" in capsys.readouterr().out
    )
