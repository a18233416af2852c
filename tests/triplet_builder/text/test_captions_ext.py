"""Captions of fact sheets WITH annotation sections (ext.land_cover, ext.osm, labels): what each field
says, that names are the vocabulary's, that nothing is said without a section, and the checker."""

from __future__ import annotations

import re
from typing import Any

import pytest

from schemas.vocabulary import LAND_COVER_PRODUCTS, OSM_FEATURES
from triplet_builder.facts.functionality import check_functionality
from triplet_builder.text.consistency import check_caption
from triplet_builder.text.offline import OfflineWriter
from triplet_builder.text.quality import agreement_errors

from .ext_sheets import EXT_SHEETS, farmland_with_ext, port_with_ext
from .factsheets import FACT_SHEETS, fact_sheet

CHIP_IDS = [f"ext-{i}" for i in range(30)]


def _fields(facts: dict[str, Any], chip_id: str) -> dict[str, Any]:
    return OfflineWriter().write(facts, chip_id).caption_fields


def test_port_sheet_fields() -> None:
    facts = port_with_ext()
    for chip_id in CHIP_IDS:
        f = _fields(facts, chip_id)
        assert "ESA WorldCover 2021" in f["terrain"] and "built-up" in f["terrain"]
        assert "about 45 %" in f["terrain"]  # the dominant class's share, nearest 5 %
        assert "port" in f["functionality"] and "urban area" in f["functionality"]
        assert "vessel" in f["functionality"].lower()  # labelled ships
        assert check_functionality(f["functionality"], facts) == []
        assert re.search(r"2\.4 km of roads|roads over 2\.4 km", f["roads"]), f["roads"]
        assert "no railways" in f["roads"].lower() and "OpenStreetMap" in f["roads"]  # queried, absent
        assert re.search(r"\b120 buildings\b|One hundred", f["buildings"]) and "about 20 %" in f["buildings"]
        assert "ships" in f["targets"] and re.search(
            r"no (?:labelled )?aircraft", f["targets"].lower()
        )  # labels.classes_labelled
        assert re.search(r"permanent water bodies in cells? 1 and 2|permanent water bodies in cells 1 and 2",
                         f["distribution"]) or "cells 1 and 2" in f["distribution"]  # fmt: skip
        caption = " ".join(v for v in f.values() if v)
        assert agreement_errors(caption) == 0


def test_farmland_sheet_fields() -> None:
    facts = farmland_with_ext()
    for chip_id in CHIP_IDS:
        f = _fields(facts, chip_id)
        assert "Dynamic World (2021-01-01 to 2021-12-31)" in f["terrain"] and "crops" in f["terrain"]
        assert f["functionality"] and "agricultural area" in f["functionality"]
        assert re.search(r"no roads or railways", f["roads"], re.I), f["roads"]
        assert "OpenStreetMap" not in f["buildings"]  # buildings were not queried: nothing said
        assert "cell 9" not in f["distribution"]  # no dominant class there


def test_nothing_is_said_without_the_sections() -> None:
    for name in FACT_SHEETS:
        for chip_id in CHIP_IDS[:10]:
            res = OfflineWriter().write(fact_sheet(name), chip_id)
            assert res.caption_fields["roads"] is None
            for word in ("OpenStreetMap", "WorldCover", "Dynamic World", "land cover"):
                assert word not in res.caption, (name, word)


@pytest.mark.parametrize("make", sorted(EXT_SHEETS))
def test_class_names_are_the_vocabulary_names(make: str) -> None:
    facts = EXT_SHEETS[make]()
    lc = facts["ext"]["land_cover"]
    legend = set(LAND_COVER_PRODUCTS[lc["product"]].values())
    others = set().union(*(v.values() for v in LAND_COVER_PRODUCTS.values())) - legend
    for chip_id in CHIP_IDS:
        fields = OfflineWriter().write(facts, chip_id).caption_fields
        caption = fields["terrain"] + " " + fields["distribution"]  # the land-cover fields
        named = {c for c in legend if c in caption}
        assert named and named <= set(lc["fractions"]), named  # only classes the facts hold
        # no class of the other product's legend (outside the names of this one: "water" in "permanent
        # water bodies", "built" in "built-up")
        rest = caption
        for c in named:
            rest = rest.replace(c, " ")
        assert not {c for c in others if re.search(rf"\b{re.escape(c)}\b", rest)}
    osm_named = {n for n in OSM_FEATURES if re.search(rf"\b{n}s?\b", " ".join(
        v for v in OfflineWriter().write(facts, CHIP_IDS[0]).caption_fields.values() if v))}  # fmt: skip
    assert osm_named <= set(facts["ext"]["osm"]["queried"]) | {"port"}


def test_varied_and_deterministic() -> None:
    facts = port_with_ext()
    captions = {OfflineWriter().write(facts, c).caption for c in CHIP_IDS}
    assert len(captions) >= 20
    assert OfflineWriter().write(facts, "x").caption == OfflineWriter().write(port_with_ext(), "x").caption


@pytest.mark.parametrize("make", sorted(EXT_SHEETS))
def test_ext_captions_pass_the_checker(make: str) -> None:
    facts = EXT_SHEETS[make]()
    for chip_id in CHIP_IDS[:10]:
        fields = _fields(facts, chip_id)
        assert check_caption(facts, fields) == []


def test_llm_prompt_views_carry_the_annotation_sections() -> None:
    from triplet_builder.text.llm_prompt import derived_facts, load_prompt

    assert load_prompt().version == "fusar-geovl/1.2"
    d = derived_facts(port_with_ext())
    assert d["land_cover"]["source"] == "ESA WorldCover 2021" and d["land_cover"]["dominant"] == "built-up"
    assert d["land_cover"]["percent"]["built-up"] == "about 45 %"
    assert d["osm"]["features"]["road"] == {"count": 14, "length": "2.4 km", "cells": [5, 6, 8, 9]}
    assert d["osm"]["not_mapped"] == ["railway", "storage tank"]
    assert d["labels"]["absent"] == ["aircraft"]
    assert [f["function"] for f in d["functions"]] == ["port", "urban area", "shipping"]
    plain = derived_facts(fact_sheet("land"))
    assert "land_cover" not in plain and "osm" not in plain and plain["functions"] == []
