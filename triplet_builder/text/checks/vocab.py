"""The vocabulary names text may use (schemas/vocabulary.py: object classes, OpenStreetMap features,
land-cover classes) as regexes, and the text helpers the checks of those names share: which mention a
negation covers ("no roads or railways"), which mention a number or a cell list belongs to, sentences.

Why one module: the land-cover, OSM and class-name checks must agree on what a name is and on when it
is denied, or one check would pass a phrase that another reads differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.vocabulary import OBJECT_CLASSES, OSM_FEATURES
from triplet_builder.text.classes import land_cover_names
from triplet_builder.text.conventions import SYNONYMS, plural

# words that name an OSM feature other than by its vocabulary name
OSM_SYNONYMS: dict[str, str] = {
    "street": "road", "highway": "road", "motorway": "road", "railroad": "railway", "rail line": "railway",
    "harbour": "port", "harbor": "port", "airfield": "airport", "aerodrome": "airport",
}  # fmt: skip
# object-class words beside the vocabulary names ("vessel", "plane": text/conventions.SYNONYMS)
OBJECT_WORDS: dict[str, str] = {**SYNONYMS, "tank": "storage tank", "oil tank": "storage tank"}
for _c in OBJECT_CLASSES:
    if _c != "other":
        OBJECT_WORDS[_c] = _c
# Land-cover names that are also ordinary caption words ("open water", "built structures"): a land-cover
# claim only in a sentence that names a land-cover map or "land cover".
AMBIGUOUS_LAND_COVER = frozenset({"water", "built", "bare", "grass", "trees", "crops"})
LAND_COVER_CONTEXT_RE = re.compile(r"\bland[\s-]?cover\b|\bWorldCover\b|\bDynamic\s+World\b", re.I)
SENTENCE_SEP_RE = re.compile(r"[.!?](?=\s|$)")
NEGATION_WORDS = r"(?:no|not|nor|without|neither|none\s+of\s+the|zero)"
MODIFIERS = r"(?:labelled|labeled|mapped|OSM|OpenStreetMap)"


def form_alternation(forms: Iterable[str]) -> str:
    """A regex alternation of phrases, longest first, with flexible separators between words."""

    def one(f: str) -> str:
        return r"\s*/\s*".join(r"[\s_-]+".join(re.escape(w) for w in part.split()) for part in f.split("/"))

    return "|".join(one(f) for f in sorted(set(forms), key=len, reverse=True))


def _forms(names: Iterable[str]) -> set[str]:
    return {x for n in names for x in (n, plural(n))}


VOCAB_WORDS: dict[str, str] = {}  # every form (lower case) -> "object:<class>" / "osm:<feature>" / both
for _w, _c in OBJECT_WORDS.items():
    for _f in _forms([_w]):
        VOCAB_WORDS[_f] = _c
for _w in list(OSM_FEATURES) + list(OSM_SYNONYMS):
    for _f in _forms([_w]):
        VOCAB_WORDS.setdefault(_f, OSM_SYNONYMS.get(_w, _w))
NAME_RE = re.compile(rf"(?<![\w-])(?P<name>{form_alternation(VOCAB_WORDS)})(?![\w-])", re.I)
LAND_COVER_RE = re.compile(rf"(?<![\w-])(?P<name>{form_alternation(land_cover_names())})(?![\w-])", re.I)
_CHAIN = rf"(?:{form_alternation(VOCAB_WORDS)})(?:\s*,\s*(?:or\s+|and\s+)?|\s+(?:or|nor|and)\s+)"
NEGATED_BEFORE_RE = re.compile(
    rf"\b{NEGATION_WORDS}\s+(?:{MODIFIERS}\s+)?(?:{_CHAIN})*$", re.I
)  # "no roads, railways or " before the name
NEGATED_AFTER_RE = re.compile(
    rf"(?:\s*,\s*(?:or\s+|and\s+)?(?:{form_alternation(VOCAB_WORDS)})|\s+(?:or|nor|and)\s+(?:{form_alternation(VOCAB_WORDS)}))*"
    r"\s+(?:is|are|were|was)\s+(?:not\b|absent\b|missing\b)",
    re.I,
)  # "railways are not mapped"


@dataclass(frozen=True)
class Mention:
    """A vocabulary name in a text: where, the words, and the class / feature it names."""

    start: int
    end: int
    words: str
    key: str


def vocab_key(words: str) -> str:
    """The object class or OSM feature a form names ("vessels" -> ship, "streets" -> road)."""
    w = re.sub(r"[\s_-]+", " ", words.strip().lower())
    return VOCAB_WORDS.get(w, w)


def land_cover_key(words: str) -> str:
    """The legend name a land-cover form names (case and spacing as the legend writes them)."""
    return re.sub(r"\s*/\s*", " / ", re.sub(r"\s+", " ", words.strip().lower()))


def mentions(text: str, land_cover: bool = False) -> list[Mention]:
    """The vocabulary names of a text (object classes and OSM features; or land-cover classes)."""
    rx, key = (LAND_COVER_RE, land_cover_key) if land_cover else (NAME_RE, vocab_key)
    return [Mention(m.start(), m.end(), m.group("name"), key(m.group("name"))) for m in rx.finditer(text)]


def negated(text: str, start: int, end: int, clause_start: int = 0) -> bool:
    """Does a negation cover the mention at [start, end) ("no roads or railways", "railways are not
    mapped")?"""
    before = text[max(clause_start, start - 120) : start]
    return NEGATED_BEFORE_RE.search(before) is not None or NEGATED_AFTER_RE.match(text, end) is not None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in SENTENCE_SEP_RE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def nearest(items: list[Mention], pos: int, end: int | None = None) -> Mention | None:
    """The mention closest to a span [pos, end)."""
    end = pos if end is None else end

    def dist(m: Mention) -> int:
        return pos - m.end if m.end <= pos else max(0, m.start - end)

    return min(items, key=dist, default=None)


def owner_before_paren(text: str, items: list[Mention], pos: int, a: int) -> Mention | None:
    """For a number inside parentheses ("built-up (about 45 %)"): the mention right before the '('."""
    opened = text.rfind("(", a, pos)
    if opened < 0 or text.find(")", opened, pos) >= 0:
        return None
    before = [m for m in items if m.end <= opened]
    return max(before, key=lambda m: m.end, default=None)


def in_sentences(spans: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    return next(((a, b) for a, b in spans if a <= pos < b), (0, 0))


__all__ = [
    "AMBIGUOUS_LAND_COVER",
    "LAND_COVER_CONTEXT_RE",
    "LAND_COVER_RE",
    "NAME_RE",
    "OSM_SYNONYMS",
    "VOCAB_WORDS",
    "Mention",
    "form_alternation",
    "in_sentences",
    "land_cover_key",
    "mentions",
    "nearest",
    "negated",
    "owner_before_paren",
    "sentence_spans",
    "vocab_key",
]
