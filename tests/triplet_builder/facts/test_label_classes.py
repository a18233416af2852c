"""Object classes of labels: the vocabulary class of real source class names (xView3's flags, HRSID / SSDD
'ship', DOTA 'plane' and 'storage-tank'), the classes a file labels (found in it, or `facts.labels.classes`),
the per-chip `labels` section, and `facts.labels.classes` checked when the region file loads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from schemas import validate
from schemas.vocabulary import OBJECT_CLASSES, normalise_object_class
from tests.conftest import ROOT, port_scene
from tests.triplet_builder.facts.test_labels import WIN, footprint, pixel_centre_lonlat, write_xview3_csv
from triplet_builder.config import ConfigError, load_region
from triplet_builder.facts.label_classes import LABELLABLE_CLASSES, check_classes, labels_section
from triplet_builder.facts.labels import LabelSet

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ship", "ship"),  # HRSID, SSDD, SAR-Ship-Dataset
        ("Ship", "ship"),
        ("plane", "aircraft"),  # DOTA
        ("storage-tank", "storage tank"),  # DOTA
        ("bridge", "bridge"),  # DOTA
        ("vessel", "ship"),  # xView3 is_vessel, as the importer reads it
        ("fishing vessel", "ship"),
        ("non-vessel object", "other"),  # xView3 is_vessel = false: never a ship
        ("object", "other"),  # default_label of a file without classes
        ("harbor", "other"),  # DOTA: a place, not an object class of the vocabulary
        (None, "other"),
    ],
)
def test_real_source_class_names_normalise(source: str | None, expected: str) -> None:
    assert normalise_object_class(source) == expected


def test_xview3_flags_give_classes_and_non_vessels_are_never_ships(tmp_path: Path) -> None:
    csv = tmp_path / "xview3.csv"
    write_xview3_csv(csv)
    labels = LabelSet.from_file(csv)
    objs = labels.objects_in_chip(port_scene(), WIN, footprint(WIN))
    by_label = {o["label"]: o["class"] for o in objs}
    assert by_label == {"fishing vessel": "ship", "vessel": "ship", "non-vessel object": "other"}
    # found in the file: ship; `other` is never a labelled class (no negative of "everything else")
    assert labels.classes_labelled == ("ship",) and labels.classes_from == "file"
    section = labels_section(labels.source, labels.classes_labelled, objs)
    assert section == {"source": "xview3.csv", "classes_labelled": ["ship"], "counts": {"ship": 2}}


def test_classes_found_in_the_whole_file_or_configured(tmp_path: Path) -> None:
    """A DOTA-like file: its classes are those of every row, matched to this scene or not."""
    csv = tmp_path / "dota.csv"
    lon, lat = pixel_centre_lonlat(100, 120)
    pd.DataFrame(
        {
            "lat": [lat, 43.0, 43.0],
            "lon": [lon, 4.5, 4.5],  # two rows far from the chip
            "category": ["plane", "storage-tank", "harbor"],
        }
    ).to_csv(csv, index=False)
    found = LabelSet.from_file(csv, match="none")
    assert found.classes_labelled == ("aircraft", "storage tank")
    objs = found.objects_in_chip(port_scene(), WIN, footprint(WIN))
    assert [(o["label"], o["class"]) for o in objs] == [("plane", "aircraft")]
    section = labels_section(found.source, found.classes_labelled, objs)
    assert section["counts"] == {"aircraft": 1, "storage tank": 0}  # zeros included
    configured = LabelSet.from_file(csv, match="none", classes=["ship", "aircraft"])
    assert configured.classes_labelled == ("aircraft", "ship") and configured.classes_from == "config"
    assert labels_section("f", configured.classes_labelled, objs)["counts"] == {"aircraft": 1, "ship": 0}


def test_labels_section_fits_the_schema() -> None:
    """The section's class enum is the vocabulary's, `other` aside; the item's `class` enum is all of it."""
    from schemas import json_schema

    props = json_schema("facts")["properties"]
    assert props["objects"]["items"]["properties"]["class"]["enum"] == list(OBJECT_CLASSES)
    assert props["labels"]["properties"]["classes_labelled"]["items"]["enum"] == list(LABELLABLE_CLASSES)
    assert "labels" not in json_schema("facts")["required"]  # old sheets without it still validate


def test_check_classes() -> None:
    assert check_classes(None) == [] and check_classes(["ship", "aircraft"]) == []
    problems = check_classes(["ship", "planes", "other", "ship", "boat house"])
    assert problems[0].startswith(
        "facts.labels.classes[1]: unknown object class 'planes' (did you mean 'aircraft'?)"
    )
    assert problems[1].startswith("facts.labels.classes[2]: 'other'")
    assert problems[2].startswith("facts.labels.classes[3]: 'ship' is listed twice")
    assert problems[3].startswith(
        "facts.labels.classes[4]: unknown object class 'boat house'; use one of ship"
    )
    with pytest.raises(ValueError, match=r"facts.labels.classes\[0\]"):
        LabelSet.from_file(ROOT / "pyproject.toml", classes=["boat"])  # checked before the file is read


def test_unknown_class_in_the_region_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "l.csv"
    pd.DataFrame({"lat": [43.38], "lon": [4.81], "acquired": ["2017-12-10T05:44:00Z"]}).to_csv(
        csv, index=False
    )
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(tmp_path / "out")
    raw["facts"] = {"labels": {"path": str(csv), "classes": ["ship", "tanks"]}}
    region = tmp_path / "region.yaml"
    region.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"facts.labels.classes\[1\]: unknown object class 'tanks'") as e:
        load_region(region)
    assert "\n" not in str(e.value)
    assert main(["validate", str(region)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "facts.labels.classes[1]" in err and "Traceback" not in err
    raw["facts"]["labels"]["classes"] = ["ship"]
    region.write_text(yaml.safe_dump(raw))
    cfg = load_region(region)
    assert cfg.facts.labels is not None and cfg.facts.labels.classes == ["ship"]
    raw["facts"]["labels"]["classes"] = None
    region.write_text(yaml.safe_dump(raw))
    assert load_region(region).config_hash() != cfg.config_hash()  # other classes, another dataset


def test_sheet_with_objects_but_no_class_is_invalid() -> None:
    """An old 1.0 sheet's object without `class` fails at its path (rebuild, or add the class)."""
    from tests.triplet_builder.text.factsheets import fact_sheet

    sheet = fact_sheet("port")
    validate("facts", sheet)
    del sheet["objects"][0]["class"]
    with pytest.raises(ValueError, match=r"\$.objects\[0\]"):
        validate("facts", sheet)
