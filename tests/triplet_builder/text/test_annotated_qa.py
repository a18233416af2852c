"""QA and the checker on a fact sheet with every annotation source of issue #9 (facts_annotated.json: the
two_classes chip with labels, ext.land_cover from ESA WorldCover 2021 and ext.osm): the writer asks
about every class the facts know, and the checker rejects answers over AND under the facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas import facts_schema_with, json_schema
from triplet_builder.config import QaConfig
from triplet_builder.text.consistency import check_caption, check_qa, check_text
from triplet_builder.text.offline import OfflineWriter

FIXTURE = Path(__file__).with_name("facts_annotated.json")
CHIP_IDS = [f"annotated-{i}" for i in range(12)]
GRID = "a 3 x 3 grid numbered 1 to 9 row by row from the top-left"


def facts() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def test_fixture_follows_the_contract() -> None:
    sections = {n: json_schema(f"facts_ext/{n}") for n in ("land_cover", "osm")}
    Draft202012Validator(facts_schema_with(sections), format_checker=FormatChecker()).validate(facts())


def _q(task: str, question: str, answer: str) -> dict[str, str]:
    return {"task": task, "question": question, "answer": answer}


def test_writer_asks_about_every_source_and_passes_the_checker() -> None:
    f = facts()
    seen: set[str] = set()
    for chip_id in CHIP_IDS:
        res = OfflineWriter().write(f, chip_id)
        assert check_text(f, res.caption_fields, res.qa) == [], res.qa
        for q in res.qa:
            text = q["question"]
            if "According to ESA WorldCover 2021" in text or "according to ESA WorldCover 2021" in text:
                seen.add("land cover cell" if "cell" in text else "land cover chip")
                assert q["task"] == "classification"
            if "OpenStreetMap" in text:
                seen.add(f"osm {q['task']}")
                assert "storage tank" in text or "wind turbine" in text or "offshore platform" in text
    assert seen == {"land cover chip", "land cover cell", "osm counting", "osm localization"}
    # the cell asked about has a dominant class over at least half valid map pixels (cell 7 is 0.4)
    for chip_id in CHIP_IDS:
        for q in OfflineWriter().write(f, chip_id).qa:
            assert "cell 7 " not in q["question"]


def test_task_mix_and_cap_are_configurable() -> None:
    f = facts()
    only = OfflineWriter(qa=QaConfig(tasks=["land_cover"])).write(f, CHIP_IDS[0]).qa
    assert [q["task"] for q in only] == ["classification", "classification"]
    capped = OfflineWriter(qa=QaConfig(max_per_chip=3)).write(f, CHIP_IDS[0]).qa
    assert len(capped) == 3 and check_qa(f, capped) == []


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (
            _q(
                "classification",
                "According to ESA WorldCover 2021, what is the dominant land-cover class of this image?",
                "cropland",
            ),
            "dominant land-cover class of the chip is 'built-up'",
        ),
        (
            _q(
                "classification",
                f"According to ESA WorldCover 2021, what is the dominant land-cover class of cell 3 of {GRID}?",
                "built-up",
            ),
            "cell 3 is 'permanent water bodies'",
        ),
        (
            _q(
                "classification",
                "According to Dynamic World, what is the dominant land-cover class of this image?",
                "built-up",
            ),
            "must name the map",
        ),
        (
            _q(
                "classification",
                "According to ESA WorldCover 2020, what is the dominant land-cover class of this image?",
                "built-up",
            ),
            "the map is of 2021",
        ),
        (
            _q(
                "counting",
                "How many storage tanks are mapped in OpenStreetMap within the footprint of this SAR image?",
                "7",
            ),
            "facts have 6",
        ),
        (
            _q(
                "counting",
                "How many storage tanks are mapped in OpenStreetMap within the footprint of this SAR image?",
                "5",
            ),
            "facts have 6",
        ),
        (
            _q("localization", f"Using {GRID}, in which cells does OpenStreetMap map storage tanks?", "1,4"),
            "cells [1, 4, 7]",
        ),
        (
            _q(
                "localization",
                f"Using {GRID}, in which cells does OpenStreetMap map storage tanks?",
                "1,4,7,8",
            ),
            "cells [1, 4, 7]",
        ),
        (
            _q(
                "counting",
                "How many wind turbines are mapped in OpenStreetMap in this image's footprint?",
                "2",
            ),
            "facts have 0",
        ),
        (
            _q("counting", "How many bridges are mapped in OpenStreetMap in this image's footprint?", "0"),
            "not queried",
        ),
        (
            _q(
                "detection",
                "Detect the storage tanks mapped in OpenStreetMap, in pixel coordinates of the 400 x 300 image.",
                "None",
            ),
            "no boxes",
        ),
        (_q("counting", "How many ships are there in this SAR image?", "4"), "facts have 3"),
        (_q("counting", "How many ships are there in this SAR image?", "2"), "facts have 3"),
        (_q("counting", "How many aircraft are there in this SAR image?", "0"), "no negative"),
        (
            _q(
                "classification",
                "What is the category of the object in the box [300, 120, 330, 128] (pixel coordinates of the 400 x 300 image)?",
                "storage tank",
            ),
            "is a 'ship'",
        ),
    ],
)
def test_wrong_answers_are_rejected(item: dict[str, str], problem: str) -> None:
    problems = check_qa(facts(), [item])
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "item",
    [
        _q(
            "classification",
            "According to ESA WorldCover 2021, what is the dominant land-cover class of this image?",
            "built-up",
        ),
        _q(
            "classification",
            f"According to ESA WorldCover 2021, which land-cover class dominates cell 3 of {GRID}?",
            "permanent water bodies",
        ),
        _q(
            "counting",
            "How many storage tanks are mapped in OpenStreetMap within the footprint of this SAR image?",
            "6",
        ),
        _q("localization", f"Using {GRID}, in which cells does OpenStreetMap map storage tanks?", "1,4,7"),
        _q("counting", "How many wind turbines are mapped in OpenStreetMap in this image's footprint?", "0"),
        _q("localization", f"Using {GRID}, in which cells does OpenStreetMap map wind turbines?", "None"),
        _q("counting", "How many storage tanks are there in this SAR image?", "4"),  # the labelled ones
    ],
)
def test_right_answers_pass(item: dict[str, str]) -> None:
    assert check_qa(facts(), [item]) == []


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Six storage tanks are mapped in OpenStreetMap.", True),
        ("Seven storage tanks are mapped in OpenStreetMap.", False),  # over
        ("Five storage tanks are mapped in OpenStreetMap.", False),  # under
        ("Four labelled storage tanks lie in cells 1, 4 and 7.", True),
        ("No wind turbines are mapped in OpenStreetMap.", True),  # queried and absent
        ("No aircraft are labelled.", False),  # not a labelled class: no negative
        ("Two wind turbines stand in the chip.", False),  # none in the facts
    ],
)
def test_caption_counts_of_osm_features_and_labels(sentence: str, ok: bool) -> None:
    problems = check_caption(facts(), {"targets": sentence})
    assert (problems == []) == ok, problems
