"""The checker on captions that use the annotation sections (issue #9): land cover, OpenStreetMap,
functionality / scene type and classes of labelled objects. Each check is held to a right statement
(accepted) and to wrong ones over AND under the facts (rejected, with a problem naming the class).

Sheets (tests/triplet_builder/text/ext_sheets.py): `port_with_ext` = ESA WorldCover 2021 built-up 45 % /
permanent water bodies 35 % / grassland 20 % (cells 1-2 water bodies, 3-9 built-up); OSM: a port (cells
1, 2, 4), 14 roads of 2400 m (cells 5, 6, 8, 9), 120 buildings covering 18 %; queried port, road,
railway, building, storage tank; labels annotate ships (5) and aircraft (0). `farmland_with_ext` =
Dynamic World 2021-01-01..2021-12-31 crops 70 % / bare 30 %; OSM queried road and railway, none mapped.
"""

from __future__ import annotations

from typing import Any

import pytest

from triplet_builder.facts.functionality import SCENE_TYPE_PRIORITY, scene_type
from triplet_builder.text.classes import scene_type as classes_scene_type
from triplet_builder.text.consistency import CAPTION_FIELDS, check_caption, check_qa

from .ext_sheets import EXT_SHEETS
from .factsheets import fact_sheet


def _fields(**kw: str | None) -> dict[str, str | None]:
    return {name: kw.get(name) for name in CAPTION_FIELDS}


def _problems(sheet: str, field: str, text: str) -> list[str]:
    facts = EXT_SHEETS[sheet]() if sheet in EXT_SHEETS else fact_sheet(sheet)
    return check_caption(facts, _fields(**{field: text}))


WC = "ESA WorldCover 2021"
DW = "Dynamic World (2021-01-01 to 2021-12-31)"
ACCEPTED = [
    # land cover: classes, dominance, percentages, cells, the map named
    ("port_ext", "terrain", f"{WC} maps the chip mostly as built-up (about 45 %), with grassland (about 20 %)."),
    ("port_ext", "terrain", f"In {WC}, permanent water bodies cover about 35 % of the mapped area."),
    ("port_ext", "distribution", f"Per grid cell, the dominant {WC} class is permanent water bodies in cells 1 and 2 and built-up in cells 3 to 9."),
    ("port_ext", "distribution", f"{WC} maps built-up in cell 5."),
    ("farmland_ext", "terrain", f"{DW} maps the chip chiefly as crops (about 70 %), with bare (about 30 %)."),
    # OSM: names, lengths, counts, shares, cells, negatives of queried features
    ("port_ext", "roads", "OpenStreetMap maps 2.4 km of roads in the chip. OpenStreetMap maps no railways here."),
    ("port_ext", "roads", "OpenStreetMap maps roads over 2400 m. Railways are not mapped in OpenStreetMap."),
    ("port_ext", "roads", "OpenStreetMap maps 14 roads."),
    ("port_ext", "buildings", "120 buildings are mapped in OpenStreetMap, covering about 20 % of the chip."),
    ("port_ext", "terrain", "OpenStreetMap maps a port in cells 1, 2 and 4."),
    ("farmland_ext", "roads", "No roads or railways are mapped in OpenStreetMap here."),
    # functionality: derived functions (port, urban area, shipping) in any field
    ("port_ext", "functionality", "The area serves as a port and an urban area. Vessels use the waters."),
    ("farmland_ext", "functionality", "Functionally, the chip shows an agricultural area."),
    # classes of labelled objects
    ("port_ext", "targets", "The labels mark 5 ships and no aircraft."),
    ("port_ext", "targets", "Vessels lie in cells 1, 2, 4 and 5; no labelled aircraft occur."),
]  # fmt: skip


@pytest.mark.parametrize(("sheet", "field", "text"), ACCEPTED)
def test_right_statements_are_accepted(sheet: str, field: str, text: str) -> None:
    assert _problems(sheet, field, text) == []


REJECTED = [
    # land cover: a class the map lacks, over / under percentages, wrong dominance, wrong cells, the map
    ("port_ext", "terrain", f"{WC} maps cropland (about 20 %).", "'cropland' is not in the facts"),
    ("port_ext", "terrain", f"{WC} maps mangroves over the chip.", "mangroves"),
    ("port_ext", "terrain", f"{WC} maps the chip as built-up (about 55 %).", "55 %"),
    ("port_ext", "terrain", f"{WC} maps the chip as built-up (about 35 %).", "35 %"),
    ("port_ext", "terrain", f"In {WC}, grassland covers more than 25 % of the mapped area.", "25 %"),
    ("port_ext", "terrain", f"{WC} maps the chip mostly as grassland.", "'grassland' is said to dominate"),
    ("port_ext", "distribution", f"In {WC}, permanent water bodies lead in cells 1, 2 and 3.", "cell 3"),
    ("port_ext", "distribution", f"In {WC}, built-up leads in every grid cell.", "cell 1"),
    ("port_ext", "distribution", f"{WC} maps grassland in cell 5.", "cell 5"),
    ("port_ext", "terrain", "ESA WorldCover 2020 maps the chip mostly as built-up.", "2020"),
    ("port_ext", "terrain", "Dynamic World maps the chip mostly as built-up.", "Dynamic World"),
    ("port_ext", "terrain", f"{WC} maps no cropland.", "stated absent"),
    ("farmland_ext", "terrain", "Dynamic World (2020-01-01 to 2020-12-31) maps crops.", "2020-01-01"),
    ("farmland_ext", "terrain", f"{DW} maps the chip as crops (about 50 %).", "50 %"),
    ("port", "terrain", f"{WC} maps the chip as built-up.", "no ext.land_cover"),
    ("port", "terrain", "Cropland surrounds the port.", "cropland"),
    # OSM: lengths over / under, features not mapped, negatives of mapped / unqueried features, counts
    ("port_ext", "roads", "OpenStreetMap maps 3.0 km of roads.", "3.0 km"),
    ("port_ext", "roads", "OpenStreetMap maps 1.9 km of roads.", "1.9 km"),
    ("port_ext", "roads", "OpenStreetMap maps roads over 2,300 m.", "2,300 m"),
    ("port_ext", "roads", "OpenStreetMap maps 1.2 km of railways.", "'railway' is not in the facts"),
    ("port_ext", "roads", "OpenStreetMap maps no bridges here.", "not queried"),
    ("port_ext", "roads", "OpenStreetMap maps no roads here.", "says no road"),
    ("port_ext", "roads", "OpenStreetMap maps 15 roads.", "15 roads"),
    ("port_ext", "roads", "OpenStreetMap maps 13 roads.", "13 roads"),
    ("port_ext", "buildings", "120 buildings are mapped in OpenStreetMap, covering about 30 % of the chip.", "30 %"),
    ("port_ext", "buildings", "121 buildings are mapped in OpenStreetMap.", "121"),
    ("port_ext", "buildings", "119 buildings are mapped in OpenStreetMap.", "119"),
    ("port_ext", "terrain", "OpenStreetMap maps a port in cells 1 and 3.", "[3]"),
    ("port_ext", "terrain", "OpenStreetMap maps wind turbines here.", "wind turbine"),
    ("farmland_ext", "roads", "A railway crosses the chip.", "railway"),
    ("port", "roads", "A road runs along the quay.", "must be null"),
    # functionality: functions the rules do not derive, in the functionality field and any other
    ("port_ext", "functionality", "The area serves as an airport.", "airport"),
    ("port_ext", "functionality", "The area serves as a port and an agricultural area.", "agricultural area"),
    ("port_ext", "terrain", "The chip shows an industrial area.", "terrain: 'industrial'"),
    ("farmland_ext", "functionality", "The area is used by vessels.", "shipping"),
    # classes of labelled objects: absent classes named, negatives outside classes_labelled
    ("port_ext", "targets", "Aircraft are parked in cell 3.", "aircraft"),
    ("port_ext", "targets", "Aircraft are visible near the quay side.", "'Aircraft' names aircraft"),
    ("port_ext", "terrain", "A bridge spans the water.", "'bridge' names bridge"),
    ("port_ext", "targets", "The labels mark no storage tanks.", "storage tank"),
    ("port_ext", "targets", "A bridge crosses cell 5.", "bridge"),
    ("port_ext", "targets", "The labels mark no ships.", "0 ship"),
    ("port_ext", "targets", "The labels mark 4 ships.", "4 ship"),
]  # fmt: skip


@pytest.mark.parametrize(("sheet", "field", "text", "needle"), REJECTED)
def test_wrong_statements_are_rejected_naming_the_class(
    sheet: str, field: str, text: str, needle: str
) -> None:
    problems = _problems(sheet, field, text)
    assert any(p.startswith(f"{field}:") and needle in p for p in problems), problems


def test_roads_must_be_null_when_osm_knows_no_roads() -> None:
    facts = EXT_SHEETS["farmland_ext"]()
    facts["ext"]["osm"]["queried"] = ["building"]
    problems = check_caption(facts, _fields(roads="No roads are mapped in OpenStreetMap here."))
    assert any("must be null" in p for p in problems), problems


def test_permanent_water_bodies_are_land_cover_not_open_water() -> None:
    """On a chip without open water (the land sheet), WorldCover's water class may be named in any field;
    a claim of open water in the same cell is still rejected."""
    facts: dict[str, Any] = fact_sheet("land")
    facts["ext"] = {"land_cover": dict(EXT_SHEETS["port_ext"]()["ext"]["land_cover"])}
    ok = f"{WC} maps permanent water bodies (about 35 %) in cells 1 and 2."
    assert check_caption(facts, _fields(water=ok, distribution=ok)) == []
    assert any("cell 1" in p for p in check_caption(facts, _fields(water="Open water lies in cell 1.")))


def _scene_q(answer: str) -> list[dict[str, str]]:
    return [
        {
            "task": "classification",
            "question": "What type of scene does this SAR image show?",
            "answer": answer,
        }
    ]


def test_scene_type_answers_must_be_the_derived_scene_type() -> None:
    port, farm = EXT_SHEETS["port_ext"](), EXT_SHEETS["farmland_ext"]()
    assert scene_type(port) == classes_scene_type(port) == "port"  # port > urban area; shipping is a use
    assert scene_type(farm) == "agricultural area"
    assert check_qa(port, _scene_q("port")) == []
    assert any("scene type is 'port'" in p for p in check_qa(port, _scene_q("urban area")))
    assert any("scene type" in p for p in check_qa(farm, _scene_q("port")))


def test_scene_type_follows_the_documented_priority() -> None:
    facts = EXT_SHEETS["port_ext"]()
    feats = facts["ext"]["osm"]["features"]
    feats["airport"] = {"count": 1, "length_m": None, "area_m2": 1.0e6, "cells": [7], "names": []}
    assert scene_type(facts) == "airport"  # airport > port
    del feats["airport"], feats["port"]
    assert scene_type(facts) == "urban area"  # built-up 45 % >= 30 %
    assert SCENE_TYPE_PRIORITY[-1] == "open water" and "shipping" not in SCENE_TYPE_PRIORITY
    ow = fact_sheet("open_water")  # water 0.97: open water; its detections near a place: shipping, a use
    assert scene_type(ow) == "open water"
    assert scene_type(fact_sheet("land")) is None  # no rule derives anything: no guess
