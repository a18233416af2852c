"""The card's rejects, splits and attribution text come from the manifest's figures, never boilerplate."""

from __future__ import annotations

from typing import Any

from schemas import COLUMN_DOCS
from triplet_builder.writers.card import ALPHAEARTH_ATTRIBUTION, render_card
from triplet_builder.writers.splits import split_warnings

REPORT: dict[str, Any] = {
    "method": "every block of a chip hashes to its split",
    "block_km": 2.5,
    "min_blocks": 5,
    "per_split": {
        "train": {"chips": 39, "blocks": 9, "scenes": 2, "objects": 3, "detections": 37, "targets": 40},
        "test": {"chips": 2, "blocks": 1, "scenes": 1, "objects": 0, "detections": 0, "targets": 0},
    },
    "split_guard_rejects": 27,
    "blocks_in_two_splits": 0,
    "cross_split": {"pairs_meeting": 4, "pairs_sharing_area": 0, "max_shared_m2": 0.0},
    "max_same_scene_overlap": 0.4999,
    "max_overlap": 0.5,
    "windows_near_duplicate": 26,
}


def _card(**manifest: Any) -> str:
    return render_card({"rows": {"train": 39, "test": 2}, **manifest}, COLUMN_DOCS)


def test_rejects_files_are_named_only_when_written() -> None:
    none = _card(rejects=0, rejects_files=[])
    assert "No chip was rejected." in none and "rejects/" not in none
    some = _card(
        rejects=27,
        rejects_files=["rejects/rejects-00000.parquet"],
        counts={"rejected_by_reason": {"split_guard": 27}},
    )
    assert "27 chips were rejected (split_guard: 27)" in some and "`rejects/rejects-00000.parquet`" in some


def test_splits_section_states_the_report() -> None:
    report = {**REPORT, "warnings": split_warnings(REPORT["per_split"], 5, ["train", "validation", "test"])}
    card = " ".join(_card(rejects=27, splits=report).split())
    assert "27 chip(s) rejected by the split guard; 4 pair(s) of chips of different splits" in card
    assert (
        "0 of them share area, the largest shared area is 0 m2; 0 block(s) hold chips of two splits" in card
    )
    assert "another kept chip of its scene is 0.4999 (chip.max_overlap 0.5); 26 flush last-row" in card
    assert "| train | 39 | 9 | 2 | 3 | 37 |" in card and "| test | 2 | 1 | 1 | 0 | 0 |" in card
    assert "> [!WARNING] > split validation is empty" in card
    assert (
        "> [!WARNING] > split test has 1 block(s) (< split.min_blocks 5): 2 chip(s) from 1 scene(s)" in card
    )
    assert "split train has" not in card
    assert "## Splits" not in _card(rejects=0)  # no report, no claim


def test_attribution_lines_are_not_repeated() -> None:
    lines = [ALPHAEARTH_ATTRIBUTION, "Contains modified Copernicus Sentinel data 2017", "Labels: ships.csv"]
    card = _card(years=[2017], attributions=lines)
    assert card.count(ALPHAEARTH_ATTRIBUTION) == 1 and card.count("Contains modified Copernicus") == 1
    assert "- Labels: ships.csv" in card
