"""Region files: the bundled demo is valid; every invalid field is reported at once, in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from triplet_builder.config import ConfigError, load_region

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def _region(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(tmp_path / "out")
    for k, v in changes.items():
        cur = raw
        *parents, leaf = k.split(".")
        for p in parents:
            cur = cur[p]
        if v is None:
            cur.pop(leaf, None)
        else:
            cur[leaf] = v
    p = tmp_path / "region.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_demo_region_is_valid_and_paths_resolve_against_the_file() -> None:
    cfg = load_region(DEMO)
    assert cfg.name == "demo" and cfg.years == [2017]
    assert (
        Path(cfg.embeddings.root) == (ROOT / "data/demo/aef_synthetic").resolve()
        or Path(cfg.embeddings.root).resolve() == (ROOT / "data/demo/aef_synthetic").resolve()
    )
    assert cfg.chip.step == 32


def test_config_hash_does_not_depend_on_where_the_repo_lives(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "pipelines" / "regions"
    copy.mkdir(parents=True)
    shutil.copy(DEMO, copy / "demo.yaml")
    (tmp_path / "elsewhere" / "data" / "demo" / "aef_synthetic").mkdir(parents=True)
    assert load_region(copy / "demo.yaml").config_hash() == load_region(DEMO).config_hash()
    assert load_region(DEMO, {"chip.size": 32}).config_hash() != load_region(DEMO).config_hash()
    assert load_region(DEMO, {"workers": 7}).config_hash() == load_region(DEMO).config_hash()


def test_every_invalid_field_is_reported_at_once(tmp_path: Path) -> None:
    p = _region(tmp_path, **{"years": [2015, 2018], "chip.size": -4, "chip.colour": "red", "split.test": 2})
    with pytest.raises(ConfigError) as e:
        load_region(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    assert "years" in msg and "2017" in msg  # no AlphaEarth before 2017
    assert "chip.size" in msg and "chip.colour" in msg and "split.test" in msg


def test_years_or_dates_exactly_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of years"):
        load_region(_region(tmp_path, **{"dates": {"start": "2018-01-01", "end": "2018-12-31"}}))
    with pytest.raises(ConfigError, match="before 2017"):
        load_region(
            _region(tmp_path, **{"years": None, "dates": {"start": "2016-01-01", "end": "2018-12-31"}})
        )
    cfg = load_region(
        _region(tmp_path, **{"years": None, "dates": {"start": "2017-06-01", "end": "2017-12-31"}})
    )
    from datetime import date

    assert cfg.accepts_date(date(2017, 12, 10)) and not cfg.accepts_date(date(2017, 3, 9))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_unreadable_region_files(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_region(p)


def test_missing_region_file_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_region(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"embeddings\.root"):
        load_region(_region(tmp_path, **{"embeddings.root": str(tmp_path / "no-such-folder")}))
    with pytest.raises(ConfigError, match=r"area\.path"):
        load_region(_region(tmp_path, **{"area": {"path": "missing.geojson"}}))


@pytest.mark.parametrize(
    "region", sorted((ROOT / "pipelines" / "regions").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_bundled_region_file_validates(region: Path) -> None:
    """The example regions (remote sources included) are valid region files; their remote parts need
    credentials only when the build runs."""
    cfg = load_region(region)
    assert cfg.name == region.stem
    assert cfg.config_hash() and Path(cfg.output.dir).name == region.stem


def test_water_threshold_is_a_number_otsu_or_the_table() -> None:
    assert load_region(DEMO).facts.water_threshold_db is None  # the table by convention and polarisation
    assert load_region(DEMO).scenes.backscatter == "auto"  # derived from the files, not declared
    assert load_region(DEMO, {"facts.water_threshold_db": "otsu"}).facts.water_threshold_db == "otsu"
    assert load_region(DEMO, {"facts.water_threshold_db": -20}).facts.water_threshold_db == -20.0
    with pytest.raises(ConfigError, match=r"facts\.water_threshold_db") as e:
        load_region(DEMO, {"facts.water_threshold_db": "bimodal"})
    assert "\n" not in str(e.value)
