"""One fact sheet as the checks need it (`Context`, computed once per sheet) and the text helpers they
share: clauses, cell references, number tokens, masking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from schemas.vocabulary import OBJECT_CLASSES
from triplet_builder.text.checks.patterns import (
    CELL_ITEM_RE,
    CELL_LIST_RE,
    CLAUSE_SEP_RE,
    COMMON_NAMES,
    COUNT_TOKEN,
    H_POS,
    POSITION_RE,
    STOP_MODS,
    V_POS,
    WORD_RE,
)
from triplet_builder.text.classes import OSM_COUNTED, PRODUCT_NAMES, labelled_classes, osm_facts
from triplet_builder.text.conventions import (
    DETECTION_KEY,
    DETECTION_PHRASES,
    GENERIC_KEY,
    GENERIC_WORDS,
    NUMBER_WORDS,
    SYNONYMS,
    UNGROUNDED_TERMS,
    cells_of,
    label_words,
    plural,
    singular,
    targets_for,
)


# == the fact context ==============================================================================
@dataclass
class Ref:
    start: int
    end: int
    cells: list[int]
    invalid: list[int]


def noun_forms(facts: Mapping[str, Any], classes: Sequence[str]) -> list[str]:
    return list(_noun_forms(tuple(o["label"] for o in facts.get("objects") or []), tuple(classes)))


@lru_cache(maxsize=1024)
def _noun_forms(labels: tuple[str, ...], classes: tuple[str, ...]) -> tuple[str, ...]:
    """The noun forms of a fact sheet's object labels and the extra classes (every sheet with the same
    labels has the same: built once per labels, not once per sheet)."""
    forms: set[str] = set()
    phrases = [label_words(label) for label in labels]
    phrases += [label_words(c) for c in classes]
    phrases += list(SYNONYMS) + list(DETECTION_PHRASES) + list(GENERIC_WORDS)
    phrases += [c for c in OBJECT_CLASSES if c != "other"] + list(OSM_COUNTED)
    for p in phrases:
        if not p:
            continue
        for q in (p, p.rpartition(" ")[2]):
            forms.update({q, plural(q)})
    return tuple(sorted(forms, key=len, reverse=True))


def form_regex(form: str) -> str:
    return r"[\s_-]+".join(re.escape(w) for w in form.split(" "))


@lru_cache(maxsize=1024)
def _sheet_patterns(labels: tuple[str, ...], classes: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """(noun_re, count_re, ungrounded_re) of a fact sheet with these object labels and extra classes."""
    nouns = "|".join(form_regex(f) for f in _noun_forms(labels, classes))
    noun_re = re.compile(rf"(?<![\w-])(?P<noun>{nouns})(?![\w-])", re.I)
    count_re = re.compile(
        rf"""
        (?<![\w.,-])(?P<count>(?:{COUNT_TOKEN})\b)
        (?P<mods>(?:\s+(?!(?:{STOP_MODS})\b)[^\W\d_][\w'-]*){{0,3}}?)
        \s+(?P<noun>{nouns})(?![\w-])
        """,
        re.X | re.I,
    )
    words = {w for label in labels for w in label_words(label).split(" ")}
    terms = [t for t in UNGROUNDED_TERMS if t not in words and singular(t) not in words]
    alts = "|".join(f"{re.escape(t)}|{re.escape(plural(t))}" for t in terms)
    return noun_re, count_re, re.compile(rf"\b(?P<term>{alts})\b", re.I)


class Context:
    """Everything the checks need from one fact sheet, computed once."""

    def __init__(self, facts: Mapping[str, Any], classes: Sequence[str]) -> None:
        self.facts = facts
        self.surface = facts["surface"]
        self.cells = {c["cell"]: c for c in self.surface["cells"]}
        self.objects = list(facts.get("objects") or [])
        self.osm = osm_facts(facts)
        self.detections = list((facts.get("detections") or {}).get("items", []))
        labels = tuple(o["label"] for o in self.objects)
        self.noun_re, self.count_re, self.ungrounded_re = _sheet_patterns(labels, tuple(classes))
        self.allowed_names = self._allowed_names()

    # -- names ---------------------------------------------------------------------------------
    def _allowed_names(self) -> set[str]:
        f = self.facts
        strings: list[str] = []
        place = f.get("place")
        if place:
            strings += [place.get(k) or "" for k in ("name", "admin1", "admin2", "country", "country_code")]
        acq = f["acquisition"]
        strings += [acq.get("sensor") or "", acq.get("mode") or "", acq.get("backscatter") or ""]
        strings += list(acq.get("polarisations") or [])
        strings += [o["label"] for o in self.objects]
        strings += [str(f["location"].get("grid_cell") or "")]
        ext = f.get("ext") or {}
        if ext.get("osm"):  # the source of OSM facts may be named, and the names OSM gives
            strings += ["OpenStreetMap OSM"] + [
                n for v in ext["osm"]["features"].values() for n in v["names"]
            ]
        if ext.get("land_cover"):
            strings.append(PRODUCT_NAMES[ext["land_cover"]["product"]])
        tokens = {t.lower() for s in strings for t in WORD_RE.findall(s)}
        return tokens | COMMON_NAMES

    def place_strings(self) -> list[str]:
        place = self.facts.get("place") or {}
        return [s for s in (place.get(k) for k in ("name", "admin1", "admin2", "country")) if s]

    # -- fractions -----------------------------------------------------------------------------
    def fractions(self, field: str) -> list[float]:
        """The fractions (in %) a caption field may state."""
        s = self.surface
        cells = list(self.cells.values())
        water = [s["water_fraction"], s["land_fraction"]] + [c["water_fraction"] for c in cells]
        water += [1.0 - c["water_fraction"] for c in cells]
        bright = [s["bright_fraction"]] + [c["bright_fraction"] for c in cells]
        valid = [s["valid_fraction"], 1.0 - s["valid_fraction"]] + [c["valid_fraction"] for c in cells]
        valid += [1.0 - c["valid_fraction"] for c in cells]
        glob = [s["water_fraction"], s["land_fraction"], s["bright_fraction"], s["valid_fraction"]]
        glob.append(1.0 - s["valid_fraction"])
        if field == "water":
            out = water
        elif field == "buildings":
            out = bright
        elif field in ("distribution", "layout", "boundary"):
            out = water + bright + valid
        elif field == "targets":
            out = []
        else:
            out = glob
        return [100.0 * f for f in out]

    def topic_fractions(self, topic: str, cells: Iterable[int]) -> list[float]:
        """The fractions (in %) of one surface type: of the whole chip and of the given cells."""
        s, cs = self.surface, [self.cells[c] for c in cells]
        if topic == "water":
            out = [s["water_fraction"]] + [c["water_fraction"] for c in cs]
        elif topic == "land":
            out = [s["land_fraction"], 1.0 - s["water_fraction"]] + [1.0 - c["water_fraction"] for c in cs]
        elif topic == "bright":
            out = [s["bright_fraction"]] + [c["bright_fraction"] for c in cs]
        else:  # nodata
            out = [1.0 - s["valid_fraction"]] + [1.0 - c["valid_fraction"] for c in cs]
        return [100.0 * f for f in out]

    # -- targets -------------------------------------------------------------------------------
    def target_cells(self, key: str) -> set[int]:
        return set(cells_of(targets_for(self.facts, key)))

    def osm_count(self, noun: str, cells: Iterable[int] | None = None) -> int | None:
        """The count of the OSM feature a noun names (None: OSM does not know it; with cells: None too,
        as OSM counts elements of the whole footprint, not per cell)."""
        name = label_words(noun)
        feat = next((f for f in self.osm if name in (f, plural(f))), None)
        if feat is None or cells is not None:
            return None
        return self.osm[feat].count

    def negative_ok(self, key: str, noun: str) -> bool:
        """May the text say there is no `key` (text/classes.py: labelled, queried or CFAR only)?"""
        if key in (DETECTION_KEY, GENERIC_KEY) and self.facts.get("detections") is not None:
            return True
        if self.facts.get("labels") and key in labelled_classes(self.facts):
            return True
        name = label_words(noun)
        return any(name in (f, plural(f)) and c.negative_ok for f, c in self.osm.items())

    def count(self, key: str, cells: Iterable[int] | None = None) -> int:
        ts = targets_for(self.facts, key)
        if cells is not None:
            keep = set(cells)
            ts = [t for t in ts if int(t["cell"]) in keep]
        return len(ts)


# == text helpers ==================================================================================
@lru_cache(maxsize=256)
def clause_spans(text: str) -> tuple[tuple[int, int], ...]:
    """(start, end) of each clause of a text. Cached: the checks of one field ask for the same text's
    clauses several times."""
    spans, start = [], 0
    for m in CLAUSE_SEP_RE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return tuple((a, b) for a, b in spans if b > a)


def clause_of(clauses: Sequence[tuple[int, int]], pos: int) -> tuple[int, int]:
    for a, b in clauses:
        if a <= pos < b:
            return a, b
    return (0, 0)


def number(tok: str) -> float:
    return float(tok.replace(",", ""))


def decimals(tok: str) -> int:
    return len(tok.partition(".")[2])


def count_value(tok: str) -> int:
    t = re.sub(r"\s+", " ", tok.lower())
    if t.isdigit():
        return int(t)
    if t in ("a single", "single"):
        return 1
    if t == "both":
        return 2
    if t == "no":
        return 0
    return NUMBER_WORDS[t]


def cell_refs(text: str, skip_starts: set[int]) -> list[Ref]:
    """All grid-cell references of a text: numbered lists and position names. A number that starts a
    target count ("cells 1 and 2 and 2 planes") ends the list."""
    refs: list[Ref] = []
    for m in CELL_LIST_RE.finditer(text):
        base = m.start("items")
        cells: list[int] = []
        invalid: list[int] = []
        end = m.start("items")
        for it in CELL_ITEM_RE.finditer(m.group("items")):
            if base + it.start("a") in skip_starts:
                break
            a = int(it.group("a"))
            b = int(it.group("b")) if it.group("b") else a
            end = base + it.end()
            for n in range(a, b + 1) if b >= a else (a, b):
                (cells if 1 <= n <= 9 else invalid).append(n)
        if cells or invalid:
            refs.append(Ref(m.start(), end, cells, invalid))
    for m in POSITION_RE.finditer(text):
        if m.group("c"):
            cell = 5
        else:
            cell = 3 * V_POS[m.group("v").lower()] + H_POS[m.group("h").lower()] + 1
        refs.append(Ref(m.start(), m.end(), [cell], []))
    refs.sort(key=lambda r: r.start)
    return refs


def mask_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with the characters of each span replaced by spaces (same length, same offsets)."""
    spans = list(spans)
    if not spans:
        return text
    chars = list(text)
    for a, b in spans:
        n = len(chars[a:b])  # a span reaching past the end masks what is there
        chars[a:b] = " " * n
    return "".join(chars)
