"""Tests of triplet_builder/facts/functionality.py: the rules on hand-written fact sheets, at and around
their thresholds, and check_functionality on texts naming derived and underived functions."""

from __future__ import annotations

from typing import Any

import pytest

from triplet_builder.facts import functionality as fn
from triplet_builder.facts.functionality import check_functionality, derive_functions

from ..text.ext_sheets import farmland_with_ext, port_with_ext
from ..text.factsheets import fact_sheet


def _names(facts: dict[str, Any]) -> list[str]:
    return [f.name for f in derive_functions(facts)]


def test_port_sheet_derives_port_urban_and_shipping_with_evidence() -> None:
    found = {f.name: f.evidence for f in derive_functions(port_with_ext())}
    assert list(found) == ["port", "urban area", "shipping"]
    assert found["port"] == ("ext.osm.features.port.count = 1",)
    assert found["urban area"] == ("ext.land_cover.fractions.built-up = 0.45",)
    assert found["shipping"] == ("objects of class ship = 5",)


def test_farmland_sheet_derives_agriculture_only() -> None:
    assert _names(farmland_with_ext()) == ["agricultural area"]


def test_sheets_without_sections_derive_only_from_objects_and_surface() -> None:
    assert _names(fact_sheet("land")) == []
    # open water 97 %, detections on water 18 km from Den Helder
    assert _names(fact_sheet("open_water")) == ["open water", "shipping"]
    far = fact_sheet("open_water")
    far["place"]["distance_km"] = 30.0
    assert _names(far) == ["open water"]
    # four labelled storage tanks do not make an industrial area (labels say what objects are)
    assert _names(fact_sheet("two_classes")) == ["shipping"]


@pytest.mark.parametrize(("share", "urban"), [(0.29, False), (0.30, True)])
def test_urban_threshold(share: float, urban: bool) -> None:
    f = farmland_with_ext()
    f["ext"]["land_cover"]["fractions"] = {"built-up": share, "cropland": 0.1, "grassland": 0.9 - share}
    f["ext"]["land_cover"]["product"] = "esa-worldcover"
    assert ("urban area" in _names(f)) is urban


def test_land_cover_rules_need_a_covered_chip() -> None:
    f = farmland_with_ext()
    f["ext"]["land_cover"]["valid_fraction"] = fn.LAND_COVER_MIN_VALID - 0.01
    assert _names(f) == []


def test_osm_rules_airport_industrial_wind_farm() -> None:
    f = fact_sheet("land")
    chip_m2 = f["chip"]["width_m"] * f["chip"]["height_m"]

    def feat(count: int, length: float | None = None, area: float | None = None) -> dict[str, Any]:
        return {"count": count, "length_m": length, "area_m2": area, "cells": [5], "names": []}

    f["ext"] = {"osm": {"source": "pbf", "snapshot": None, "queried": [], "built_up_fraction": None, "features": {
        "runway": feat(1, length=fn.RUNWAY_MIN_M - 1),
        "industrial area": feat(1, area=(fn.INDUSTRIAL_MIN_SHARE - 0.01) * chip_m2),
        "storage tank": feat(fn.STORAGE_TANKS_MIN - 1),
        "wind turbine": feat(fn.WIND_TURBINES_MIN),
    }}}  # fmt: skip
    assert _names(f) == ["wind farm"]
    feats = f["ext"]["osm"]["features"]
    feats["runway"]["length_m"] = fn.RUNWAY_MIN_M
    feats["storage tank"]["count"] = fn.STORAGE_TANKS_MIN
    assert _names(f) == ["airport", "industrial area", "wind farm"]


def test_check_functionality_flags_underived_functions_only() -> None:
    facts = port_with_ext()
    assert check_functionality("The area serves as a port and an urban area.", facts) == []
    problems = check_functionality("The area serves as an airport and a port.", facts)
    assert problems == ["functionality: 'airport' names the function airport, which the facts do not support"]
    assert check_functionality("A harbour with cropland around it.", facts) == [
        "functionality: 'cropland' names the function agricultural area, which the facts do not support"
    ]
    assert check_functionality("There is no airport here.", facts) == []  # a negation claims nothing
    assert check_functionality(None, facts) == []


def test_check_functionality_ignores_place_names() -> None:
    facts = fact_sheet("land")
    facts["place"]["name"] = "Port-Saint-Louis-du-Rhone"
    assert check_functionality("Land near Port-Saint-Louis-du-Rhone.", facts) == []
    assert check_functionality("A port near Port-Saint-Louis-du-Rhone.", facts) != []


def test_objects_named_by_their_own_label_are_not_functions() -> None:
    """An object of class `other` named by its file's class ("harbor") is a labelled object, not a claim
    that the area is a port; the same word without such an object is still checked."""
    from triplet_builder.facts.functionality import check_functionality

    facts = {"objects": [{"label": "harbor", "class": "other"}], "surface": {"water_fraction": 0.0}}
    assert check_functionality("The labels mark 2 harbors in cell 5.", facts) == []
    assert check_functionality("The labels mark 2 harbors in cell 5.", {"surface": {"water_fraction": 0.0}})
