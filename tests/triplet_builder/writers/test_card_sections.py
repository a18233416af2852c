"""The card's radiometry and labels sections state what the build's manifest says, and the thresholds the
facts stage used (the documented table: sigma0 co-pol -18 / 0 dB, cross-pol -24; gamma0 co-pol -17 / +1)."""

from __future__ import annotations

from typing import Any

from tests.triplet_builder.writers.test_card_splits import REPORT
from triplet_builder.writers.card import render_card


def _manifest(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "rows": {"train": 3},
        "scenes": [
            {"backscatter": "gamma0", "backscatter_source": "filename", "polarisations": ["VV"]},
            {"backscatter": "gamma0", "backscatter_source": "filename", "polarisations": ["VV"]},
            {"backscatter": "sigma0", "backscatter_source": "product", "polarisations": ["VV", "VH"]},
            {"backscatter": "unknown", "backscatter_source": "unknown", "polarisations": ["HH"]},
        ],
        "config": {"facts": {"water_threshold_db": None, "bright_threshold_db": None}},
    }
    m.update(over)
    return m


def _rows(card: str, header: str) -> list[str]:
    lines = card.splitlines()
    i = lines.index(header)
    j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("## "))
    return [ln for ln in lines[i:j] if ln.startswith("| ") and not ln.startswith("| convention")]


def test_radiometry_rows_per_convention_with_the_thresholds_used() -> None:
    rows = _rows(render_card(_manifest(), {}), "## Radiometry")
    assert len(rows) == 3
    gamma = next(r for r in rows if r.startswith("| gamma0"))
    assert "| filename | VV | 2 | -17 dB (table:gamma0/co-pol) | 1 dB (table:gamma0/co-pol) |" in gamma
    sigma = next(r for r in rows if r.startswith("| sigma0"))
    assert "| VV, VH | 1 | -18 dB (table:sigma0/co-pol); cross-pol -24 dB" in sigma
    unknown = next(r for r in rows if r.startswith("| unknown"))
    assert "no caption names a convention" in unknown


def test_radiometry_states_configured_and_otsu_thresholds() -> None:
    cfg = {"facts": {"water_threshold_db": -20.5, "bright_threshold_db": 3.0}}
    rows = _rows(render_card(_manifest(config=cfg), {}), "## Radiometry")
    assert all("-20.5 dB (config)" in r and "3 dB (config)" in r for r in rows)
    otsu = {"facts": {"water_threshold_db": "otsu", "bright_threshold_db": None}}
    rows = _rows(render_card(_manifest(config=otsu), {}), "## Radiometry")
    assert all("Otsu split of each scene's histogram" in r for r in rows)


def test_labels_section_from_the_counts() -> None:
    card = render_card(_manifest(), {})
    assert "No label file was used" in card
    counts = {
        "labels": {
            "file": "ships.csv",
            "match": "time",
            "time_tolerance_s": 600,
            "total": 7,
            "in_chips": 2,
            "matched_outside_chips": 1,
            "unmatched": 3,
            "no_position": 1,
        }
    }
    card = render_card(_manifest(counts=counts), {})
    assert "No label file was used" not in card
    assert "`ships.csv` were matched to scenes by acquisition time within 600 s of the scene start" in card
    assert "Of its 7 rows: 2 in a chip window of the plan" in card
    assert "1 matched to a scene of the build but in none of its chips, 3 matched to no scene" in card


def test_labels_section_states_the_classes_and_counts_per_class_and_split() -> None:
    counts = {
        "labels": {
            "file": "x.csv",
            "match": "scene_id",
            "total": 9,
            "in_chips": 7,
            "matched_outside_chips": 1,
            "unmatched": 1,
            "no_position": 0,
            "classes_labelled": ["aircraft", "ship"],
            "classes_from": "file",
        }
    }
    tally = {"blocks": 9, "scenes": 1, "objects": 0, "detections": 0, "targets": 0}
    splits = {
        **REPORT,
        "per_split": {
            "train": {**tally, "chips": 5, "objects_by_class": {"ship": 4, "other": 1}},
            "validation": {**tally, "chips": 1, "objects_by_class": {}},
            "test": {**tally, "chips": 1, "objects_by_class": {"ship": 1, "aircraft": 2}},
        },
    }
    card = render_card(_manifest(counts=counts, splits=splits), {})
    assert "Classes labelled: aircraft, ship (every class found in the file" in card
    lines = card.splitlines()
    head = lines.index("| class | train | validation | test | all |")
    assert lines[head + 2 : head + 5] == [
        "| aircraft | 0 | 0 | 2 | 2 |",
        "| other | 1 | 0 | 0 | 1 |",
        "| ship | 4 | 0 | 1 | 5 |",
    ]
    configured = {"labels": {**counts["labels"], "classes_labelled": ["ship"], "classes_from": "config"}}
    empty = {**REPORT, "per_split": {"train": {**tally, "chips": 5, "objects_by_class": {}}}}
    card = render_card(_manifest(counts=configured, splits=empty), {})
    assert "Classes labelled: ship (as the region file declares" in card
    assert "No labelled object lies in a kept chip." in card and "| class |" not in card
