"""The checker's cheap first scans (issue #13) never skip a text that the full scans would judge: each
prefilter finds something in every text where one of the patterns it guards matches, and blanking strings
keeps the text's length and offsets."""

from __future__ import annotations

import itertools

from triplet_builder.facts.functionality import (
    _ANY_FUNCTION_RE,
    _FUNCTION_RES,
    FUNCTIONS,
    blank_strings,
    named_function_spans,
)
from triplet_builder.text.checks.numbers import check_percentages
from triplet_builder.text.checks.patterns import PERCENT_RE, PERCENT_SIGN_RE
from triplet_builder.text.offline import OfflineWriter

from .factsheets import FACT_SHEETS, fact_sheet

WORDS = [
    "port", "Seaports", "HARBOUR", "harbors", "airfield", "aerodromes", "industry", "Industrial", "housing",
    "residential", "city", "towns", "settlement", "built-up areas", "agriculture", "farming", "farmland",
    "crops", "cropland", "wetlands", "marshland", "mangroves", "forested", "woodland", "wind  parks",
    "open-water area", "vessel traffic", "used by vessels", "vessels use", "shipping", "aircraft use",
    "serves aircraft", "aviation", "airport", "sport", "Porter", "crowd", "townhall", "wind", "water",
]  # fmt: skip
PERCENTS = [
    "about 35 %", "35%", "12.5 per cent", "12.5 percent", "between 10 and 20 PerCent", "10-20 %",
    "less than 5 %", "40 to 45 percent", "1,200 %", "35", "35 per", "35 cents", "no percentage here",
]  # fmt: skip


def test_the_function_prefilter_finds_every_text_a_function_pattern_matches() -> None:
    texts = [" ".join(p) for p in itertools.permutations(WORDS[::7], 2)] + WORDS
    texts += [f"no {w} here" for w in WORDS] + ["", "A plain text about backscatter."]
    for text in texts:
        full = any(rx.search(text) for _, rx in _FUNCTION_RES)
        assert (_ANY_FUNCTION_RE.search(text) is not None) == full, text
    assert len(_FUNCTION_RES) == len(FUNCTIONS) and named_function_spans("Seaports and a city")


def test_the_percent_prefilter_finds_every_percentage() -> None:
    for text in PERCENTS + [f"{a}; {b}" for a, b in itertools.combinations(PERCENTS, 2)]:
        if PERCENT_RE.search(text):
            assert PERCENT_SIGN_RE.search(text), text
        if PERCENT_SIGN_RE.search(text) is None:
            assert check_percentages(None, "water", text, []) == []  # type: ignore[arg-type]  # never reaches ctx
    # and on the offline writer's captions of every bundled fact sheet
    for name in FACT_SHEETS:
        caption = OfflineWriter().write(fact_sheet(name), "c0ffee0000000000").caption
        for m in PERCENT_RE.finditer(caption):
            assert PERCENT_SIGN_RE.search(m.group(0)), m.group(0)


def test_blank_strings_keeps_offsets_and_masks_case_insensitively() -> None:
    text = "Port-Saint-Louis lies near port-saint-louis and PORT-SAINT-LOUIS; a port."
    out = blank_strings(text, ["Port-Saint-Louis", "", "a port"])
    assert out == " " * 16 + " lies near " + " " * 16 + " and " + " " * 16 + ";       ."
    assert blank_strings(text, []) == text
