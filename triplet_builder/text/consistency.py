"""Text-vs-facts consistency checker: does a caption / task QA say only what the fact sheet says?

`check_text(facts, fields, qa)` returns a list of problems (empty = consistent). It parses FREE TEXT
(verbose regexes with named groups), never the offline writer's exact phrasing, so the LLM writer can
be held to the same rules. What it catches:

- hedges and refusals (`HEDGE_WORDS`, `REFUSAL_PATTERNS`);
- percentages: every "N %" (also "less than N %", "N-M %", "between N and M %") must match a fraction
  of the fact sheet under the rounding convention of the dataset (nearest 5 %, see `format_percent`):
  a plain value passes when it is within half a step (2.5 points) of the fact. Which fractions: those
  of the surface types its clause names (water, land, strong scatterers, no-data; of the whole chip and
  of the cells the clause names), limited to what the field may talk about (water: water / land /
  no-data, buildings: strong scatterers, targets: none); a clause naming no surface type may state
  any fraction the field may talk about;
- counts of targets (digits or number words up to twenty, "no", "a single", "both") followed by a
  target noun ("5 labelled ships", "two bright point targets", "no vessels"); a count followed by
  "in cell(s) ..." is compared with the targets of those cells only;
- grid cells: "cell 3", "cells 1, 2 and 7", "cells 5-9", "top-left" ... are tied to the topic of their
  clause (water, land, strong scatterers, no-data, a target class, with negation and "mostly") and must
  agree with the per-cell facts; numbers outside 1..9 are errors;
- place names and countries (capitalised words that are neither in the fact sheet nor common SAR
  vocabulary), the compass direction "N km north-east of <place>", lengths / distances (m, km), dB
  values and coordinates (degrees), dates, months, years, seasons, orbit direction, polarisations and
  sensor names;
- a land/water boundary claimed where the facts have none, a non-null roads field, and terms the facts
  can never support (`UNGROUNDED_TERMS`: roads, forests, harbours, rivers, ...);
- task QA (FUSAR-GPT formats): counting = a bare integer equal to the true count of the asked class;
  localization = ascending comma-separated cells 1..9 or "None", equal to the true cells; detection =
  "None" or a JSON list of {"bbox_2d": [x1, y1, x2, y2], "label": str}, one box per true object
  (IoU >= 0.99, same labels, same number); classification = the label of the object at the box the
  question names. Boxes are in the QA frame (the chip image's pixels, schemas/frames.py), which every
  detection and classification question must state ("pixel coordinates of the 64 x 64 image"). A question about a class the checker does not know (not labelled in the facts, not
  a synonym, not in `classes`) passes only with a negative answer (0 / None).

The conventions shared with the writers live here too (percent rounding, cell names, thresholds, the
meaning of a target class), so the writers and the checker cannot drift apart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from schemas import CAPTION_FIELDS, QA_TASKS
from schemas.frames import box_to_frame, qa_frame, stated_frame

# == conventions shared with the writers ===========================================================
HEDGE_WORDS: tuple[str, ...] = (
    "possibly", "possible", "likely", "unlikely", "probably", "probable", "perhaps", "maybe",
    "appear", "appears", "appeared", "appearing", "apparently", "seem", "seems", "seemed",
    "seemingly", "may", "might", "could", "suggest", "suggests", "suggested", "suggesting",
    "presumably", "potentially", "plausibly", "arguably", "uncertain", "unclear",
)  # fmt: skip
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bI\s+(?:cannot|can't|can\s+not|am\s+unable|'m\s+unable|am\s+not\s+able|do\s+not|don't)\b",
    r"\bas\s+an\s+AI\b",
    r"\b(?:sorry|apologi[sz]e)\b",
    r"\bunable\s+to\s+(?:determine|identify|tell|see|say|infer)\b",
    r"\b(?:not|hard|difficult|impossible)\s+(?:possible\s+)?to\s+(?:determine|tell|identify|say|infer)\b",
    r"\b(?:cannot|can't|can\s+not)\s+be\s+(?:determined|identified|seen|inferred|told)\b",
    r"\b(?:no|not\s+enough|insufficient)\s+information\b",
)

PERCENT_STEP = 5  # percentages are written rounded to the nearest 5 %
PERCENT_TOLERANCE = PERCENT_STEP / 2  # a stated plain percentage may differ from the fact by this much

CELL_NAMES: dict[int, str] = {
    1: "top-left", 2: "top-centre", 3: "top-right",
    4: "centre-left", 5: "centre", 6: "centre-right",
    7: "bottom-left", 8: "bottom-centre", 9: "bottom-right",
}  # fmt: skip

MOSTLY = 0.5  # a cell is "mostly water" at or above this water fraction, "mostly land" below it
WATER_PRESENT = 0.1  # a cell "holds water" at or above this water fraction ("holds no water" below)
BRIGHT_PRESENT = 0.05  # a cell "holds strong scatterers" at or above this bright fraction
GLOBAL_ABSENT = 0.05  # "no open water" / "no strong scatterers" about the whole chip: below this
NODATA_CELL = 0.5  # a cell "lies mostly outside the scene" below this valid fraction
NODATA_PARTLY = 0.95  # a cell "lies (partly) outside the scene" below this valid fraction

COMMON_CLASSES: tuple[str, ...] = ("ship", "plane")  # default classes of negative QA (FUSAR-GPT targets)
DETECTION_KEY = "bright point target"  # canonical class of the unclassified CFAR detections
GENERIC_KEY = "target"  # "targets" / "objects": the labelled objects, or the detections if none

NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip

# Class synonyms (singular, lower case) -> canonical class.
SYNONYMS: dict[str, str] = {
    "ship": "ship", "vessel": "ship", "boat": "ship",
    "plane": "plane", "aircraft": "plane", "airplane": "plane", "aeroplane": "plane", "airliner": "plane",
}  # fmt: skip
DETECTION_PHRASES = ("bright point target", "point target", "bright target", "cfar detection", "detection")
GENERIC_WORDS = ("target", "object")

# Words the fact sheet can never support in a caption (unless an object label names them).
UNGROUNDED_TERMS: tuple[str, ...] = (
    "road", "street", "highway", "motorway", "railway", "railroad", "runway", "airport", "airfield",
    "forest", "woodland", "vegetation", "tree", "crop", "cropland", "farmland", "agricultural",
    "residential", "industrial", "commercial", "urban", "city", "town", "village", "settlement",
    "port", "harbour", "harbor", "dock", "pier", "quay", "marina", "river", "lake", "reservoir",
    "canal", "sea", "ocean", "bay", "estuary", "mountain", "hill", "desert", "snow", "ice",
    "wetland", "marsh",
)  # fmt: skip

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_SEASONS = ("winter", "spring", "summer", "autumn")
_COMPASS_DEG = {"N": 0, "NE": 45, "E": 90, "SE": 135, "S": 180, "SW": 225, "W": 270, "NW": 315}
# Capitalised words that are fine in any caption (SAR vocabulary, units, compass, months).
_COMMON_NAMES = frozenset(
    {"sar", "cfar", "utc", "db", "vv", "vh", "hh", "hv", "iw", "ew", "sm", "wv", "grd", "slc", "rtc",
     "json", "sigma", "gamma", "beta", "north", "south", "east", "west", "n", "s", "e", "w", "ne",
     "nw", "se", "sw", "km", "m"}
    | {m.lower() for m in _MONTHS}
)  # fmt: skip
_SENSOR_RE = re.compile(
    r"""\b(?P<sensor>Sentinel-?1[A-D]?|Gaofen-?3|GF-?3|TerraSAR-X|TanDEM-X|PAZ|COSMO-SkyMed|
    RADARSAT-?2|RCM|ALOS-?2|PALSAR-?2|ICEYE|Capella|Umbra|NISAR|SAOCOM|Envisat|ERS-?[12])(?![\w-])""",
    re.X | re.I,
)


def round_percent(fraction: float) -> int:
    """The dataset's percentage convention: 100 * fraction rounded half-up to the nearest 5."""
    return math.floor(fraction * 100.0 / PERCENT_STEP + 0.5 + 1e-9) * PERCENT_STEP


def format_percent(fraction: float) -> str:
    """A fraction as the writers state it: "0 %", "less than 5 %", "about 45 %", "more than 95 %",
    "100 %"."""
    if fraction <= 0.0:
        return "0 %"
    if fraction >= 1.0:
        return "100 %"
    p = round_percent(fraction)
    if p <= 0:
        return f"less than {PERCENT_STEP} %"
    if p >= 100:
        return f"more than {100 - PERCENT_STEP} %"
    return f"about {p} %"


def singular(word: str) -> str:
    """Naive English singular of one lower-case word."""
    if word in ("aircraft", "series", "species", "gas", "bus") or word.endswith("ss"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and len(word) > 2:
        return word[:-1]
    return word


def plural(phrase: str) -> str:
    """Naive English plural of the last word of a phrase ("storage tank" -> "storage tanks")."""
    head, _, last = phrase.rpartition(" ")
    if last in ("aircraft",) or not last:
        p = last
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        p = last[:-1] + "ies"
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        p = last + "es"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def label_words(label: str) -> str:
    """A label as plain lower-case words ("storage_tank" -> "storage tank")."""
    return " ".join(w for w in re.split(r"[\s_\-]+", label.strip().lower()) if w)


@lru_cache(maxsize=4096)
def canonical_label(text: str) -> str:
    """The class a label or noun phrase names: singular, lower case, synonyms merged ("Vessels" ->
    "ship"); the CFAR detections -> DETECTION_KEY; "targets" / "objects" -> GENERIC_KEY."""
    words = label_words(text).split(" ")
    if not words or not words[0]:
        return ""
    words[-1] = singular(words[-1])
    phrase = " ".join(words)
    if phrase in DETECTION_PHRASES:
        return DETECTION_KEY
    if phrase in GENERIC_WORDS:
        return GENERIC_KEY
    return SYNONYMS.get(phrase, phrase)


def label_matches(key: str, label: str) -> bool:
    """Does an object labelled `label` belong to the class `key` (a canonical_label)? Exact class, or
    the class of its head noun ("fishing vessel" is a "ship"); GENERIC_KEY matches every object."""
    if key == GENERIC_KEY:
        return True
    c = canonical_label(label)
    if c == key:
        return True
    head = canonical_label(c.rpartition(" ")[2])
    return head == key and head != GENERIC_KEY


def targets_for(facts: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The targets of class `key`: matching labelled objects; DETECTION_KEY: the CFAR detections (label
    DETECTION_KEY); GENERIC_KEY: all objects, or the detections when there are no objects."""
    objects = list(facts.get("objects") or [])
    detections = [dict(d, label=DETECTION_KEY) for d in (facts.get("detections") or {}).get("items", [])]
    if key == DETECTION_KEY:
        return detections
    if key == GENERIC_KEY:
        return objects if objects else detections
    return [o for o in objects if label_matches(key, o["label"])]


def cells_of(targets: Iterable[Mapping[str, Any]]) -> list[int]:
    return sorted({int(t["cell"]) for t in targets})


def water_cells(facts: Mapping[str, Any], lo: float, hi: float = 1.01) -> list[int]:
    """Cells (valid for at least NODATA_CELL) whose water fraction is in [lo, hi)."""
    return [
        c["cell"]
        for c in facts["surface"]["cells"]
        if c["valid_fraction"] >= NODATA_CELL and lo <= c["water_fraction"] < hi
    ]


def has_boundary(facts: Mapping[str, Any]) -> bool:
    """A land/water boundary: some valid cells are mostly water and others mostly land."""
    return bool(water_cells(facts, MOSTLY)) and bool(water_cells(facts, 0.0, MOSTLY))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes (x2 / y2 exclusive)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union <= 0:
        return 1.0 if list(a) == list(b) else 0.0
    return inter / union


IOU_MATCH = 0.99

# == regexes =======================================================================================
_HEDGE_RE = re.compile(r"\b(?P<word>" + "|".join(HEDGE_WORDS) + r")\b", re.I)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.I)
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"

_PERCENT_RE = re.compile(
    rf"""
    (?:(?P<cmp>less\s+than|fewer\s+than|under|below|more\s+than|over|above|at\s+least|at\s+most
        |up\s+to|nearly|almost|about|around|roughly|approximately|some|close\s+to)\s+)?
    (?<![\d.])
    (?:
        between\s+(?P<blo>{_NUM})\s*(?:%|per\s*cent|percent)?\s+and\s+(?P<bhi>{_NUM})
      | (?P<rlo>{_NUM})\s*%?\s*(?:-|–|to)\s*(?P<rhi>{_NUM})
      | (?P<num>{_NUM})
    )
    \s*(?:%|per\s*cent\b|percent\b)
    """,
    re.X | re.I,
)

_MEASURE_RE = re.compile(
    rf"""
    (?<![\w.,])[-−]?(?P<a>{_NUM})
    (?:\s*(?:km|m|[dD][bB])?\s*(?:-|–|\bto\b|\band\b)\s*[-−]?(?P<b>{_NUM}))?
    \s*(?P<unit>kilomet(?:re|er)s?|km|met(?:re|er)s?|m|[dD][bB]|°)(?![^\W\d_])
    """,
    re.X,
)

# "W m × H m", "W by H m", "W km x H km": a size is width then height
_SIZE_RE = re.compile(
    rf"""
    (?<![\w.,])(?P<a>{_NUM})\s*(?:km|m)?\s*(?:×|\bx\b|\bby\b)\s*(?P<b>{_NUM})
    \s*(?P<unit>km|m)(?![^\W\d_])
    """,
    re.X,
)

_ISO_DATE_RE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")
_TEXT_DATE_RE = re.compile(
    rf"""
    (?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?
    \b(?P<month>{"|".join(_MONTHS)})\b
    (?:\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b,?)?
    (?:\s+(?P<y>\d{{4}})\b)?
    """,
    re.X,
)
_YEAR_RE = re.compile(
    r"(?<![\d.,×x-])\b(?P<y>19\d\d|20\d\d)\b(?![.,]?\d)(?!\s*(?:×|x\b|by\b|%|m\b|km\b|met|kilomet|dB|db|px|pixel|°))",
)
_SEASON_RE = re.compile(r"\b(?P<season>winter|spring|summer|autumn)\b", re.I)
_ORBIT_RE = re.compile(r"\b(?P<orbit>ascending|descending)\b", re.I)
_POL_RE = re.compile(r"\b(?P<pol>VV|VH|HH|HV)\b")
# a backscatter convention named in the text: sigma0, gamma-nought, beta 0, σ0 / γ⁰ / β°
_CONVENTION_RE = re.compile(
    r"\b(?P<word>sigma|gamma|beta)[-_ ]?(?:0|nought|naught|zero)\b|(?P<greek>[σγβ])\s?[0⁰°]", re.I
)
_GREEK = {"σ": "sigma", "γ": "gamma", "β": "beta"}

_CELL_LIST_RE = re.compile(
    r"""
    \b(?:grid\s+)?cells?\s*(?:\#\s*|no\.\s*|numbers?\s+)?
    (?P<items>\d+(?:\s*(?:,\s*(?:and\s+|or\s+)?|\band\b|\bor\b|&|\bto\b|\bthrough\b|-|–)\s*\d+)*)
    """,
    re.X | re.I,
)
_CELL_ITEM_RE = re.compile(r"(?P<a>\d+)(?:\s*(?:-|–|\bto\b|\bthrough\b)\s*(?P<b>\d+))?")
_V_POS = {"top": 0, "upper": 0, "centre": 1, "center": 1, "central": 1, "middle": 1, "bottom": 2, "lower": 2}
_H_POS = {"left": 0, "centre": 1, "center": 1, "middle": 1, "right": 2}
_POSITION_RE = re.compile(
    r"""
    \b(?P<v>top|upper|centre|center|central|middle|bottom|lower)[\s-]+(?P<h>left|centre|center|middle|right)\b
    | \b(?P<c>centre|center|central|middle)\s+cell\b
    """,
    re.X | re.I,
)

_CLAUSE_SEP_RE = re.compile(r"[.!?](?=\s|$)|[;:]|\b(?:while|whereas|but)\b", re.I)
_NEGATION = r"(?:no|not|without|none|zero|free\s+of|lacks?|lacking|nor)"
_MOSTLY_RE = re.compile(
    r"\b(?:mostly|mainly|largely|predominantly|dominat\w*|majority|entirely|fully|completely|almost\s+all)\b",
    re.I,
)
# the whole chip said to be one surface ("entirely land", "all open water"): denies the other one
_TOTAL_RE = re.compile(
    r"""\b(?:entirely|completely|fully|wholly|purely|solely|only|all)\s+(?:of\s+it\s+)?
    (?:(?:dry\s+)?(?P<land>land|ground)|(?:open\s+)?(?P<water>water|sea|ocean))\b""",
    re.X | re.I,
)
# an exclusive cell reference ("water lies only in cell 1"): the cells not named hold none
_ONLY_RE = re.compile(r"\b(?:only|solely|exclusively)\b", re.I)
_TOPIC_RES: dict[str, re.Pattern[str]] = {
    "water": re.compile(r"\bwaters?\b|\bsea\b|\bocean\b|\briver\b|\blake\b", re.I),
    "land": re.compile(r"\bland\b|\bground\b", re.I),
    "bright": re.compile(
        r"""\bbright(?!\s+(?:point|targets?|spots?|objects?)\b)\b|\bstrong(?:\s+\w+)?\s+(?:scatter\w*|backscatter|returns?|reflect\w*)
        |\bbuilt\b|\bbuildings?\b|\bstructures?\b|\bscatterers?\b""",
        re.I | re.X,
    ),
    "nodata": re.compile(
        r"\bno[\s-]data\b|\boutside\s+the\s+(?:scene|image|swath|footprint)\b|\binvalid\b", re.I
    ),
}
_FIELD_TOPIC = {"targets": "target", "buildings": "bright", "water": "water"}
_BOUNDARY_RE = re.compile(
    r"""\b(?:land\s*[/-]\s*water|water\s*[/-]\s*land)\s+(?:boundary|border|interface|edge|transition)\b
    |\bshore\s*lines?\b|\bcoast\s*lines?\b|\bwater\s*lines?\b""",
    re.X | re.I,
)
_DIRECTION_RE = re.compile(
    r"""\b(?P<dir>north(?:[\s-]?(?:east|west))?|south(?:[\s-]?(?:east|west))?|east|west)(?:wards?)?\s+of\s+
    (?:the\s+(?:town|city|village|centre|center)\s+of\s+)?(?P<rest>[^\W\d_][^.;()]{0,80})""",
    re.X | re.I,
)
_STOP_MODS = (
    r"of|in|on|at|by|with|within|from|to|into|onto|over|under|and|or|but|the|a|an|this|that|these|"
    r"those|its|their|is|are|was|were|be|been|has|have|had|hold|holds|contain|contains|containing|"
    r"show|shows|showing|lie|lies|sit|sits|cover|covers|per|cell|cells|grid|m|km|metres?|meters?|px|"
    r"pixels?|db|percent|x|long|wide|across|between|than|about|around|which|whose|where|each|every|"
    r"only|all|remaining|rest"
)
_SKIP_MODS = {"other", "more", "further", "additional", "extra", "else"}
_COUNT_TOKEN = r"\d+|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r"|a\s+single|single|both|no"
_AFTER_COUNT_CELLS_RE = re.compile(
    rf"""(?:[,\s]+(?!(?:and|or|but|while|whereas|with|than|of|both|each|all|some|{"|".join(NUMBER_WORDS)})\b)[^\W\d_]+){{0,3}}?[,\s]+
    (?:in|within|inside|across|over|among)\s+(?:the\s+)?(?:grid\s+)?(?=cells?\b|[^\W\d_]+[\s-]+[^\W\d_]+)""",
    re.X | re.I,
)
_BOX_RE = re.compile(
    r"\[\s*(?P<x1>-?\d+(?:\.\d+)?)\s*,\s*(?P<y1>-?\d+(?:\.\d+)?)\s*,\s*(?P<x2>-?\d+(?:\.\d+)?)\s*,\s*(?P<y2>-?\d+(?:\.\d+)?)\s*\]"
)
_COUNT_ANSWER_RE = re.compile(r"^(?:0|[1-9]\d*)$")
_LOC_ANSWER_RE = re.compile(r"^(?:None|[1-9](?:,[1-9])*)$")
_LABEL_ANSWER_RE = re.compile(r"^[^\W\d_][\w\s/-]{0,60}$")


# == the fact context ==============================================================================
@dataclass
class _Ref:
    start: int
    end: int
    cells: list[int]
    invalid: list[int]


def _noun_forms(facts: Mapping[str, Any], classes: Sequence[str]) -> list[str]:
    forms: set[str] = set()
    phrases = [label_words(o["label"]) for o in facts.get("objects") or []]
    phrases += [label_words(c) for c in classes]
    phrases += list(SYNONYMS) + list(DETECTION_PHRASES) + list(GENERIC_WORDS)
    for p in phrases:
        if not p:
            continue
        for q in (p, p.rpartition(" ")[2]):
            forms.update({q, plural(q)})
    return sorted(forms, key=len, reverse=True)


def _form_regex(form: str) -> str:
    return r"[\s_-]+".join(re.escape(w) for w in form.split(" "))


class _Context:
    """Everything the checks need from one fact sheet, computed once."""

    def __init__(self, facts: Mapping[str, Any], classes: Sequence[str]) -> None:
        self.facts = facts
        self.surface = facts["surface"]
        self.cells = {c["cell"]: c for c in self.surface["cells"]}
        self.objects = list(facts.get("objects") or [])
        self.detections = list((facts.get("detections") or {}).get("items", []))
        nouns = "|".join(_form_regex(f) for f in _noun_forms(facts, classes))
        self.noun_re = re.compile(rf"(?<![\w-])(?P<noun>{nouns})(?![\w-])", re.I)
        self.count_re = re.compile(
            rf"""
            (?<![\w.,-])(?P<count>(?:{_COUNT_TOKEN})\b)
            (?P<mods>(?:\s+(?!(?:{_STOP_MODS})\b)[^\W\d_][\w'-]*){{0,3}}?)
            \s+(?P<noun>{nouns})(?![\w-])
            """,
            re.X | re.I,
        )
        self.allowed_names = self._allowed_names()
        labels = {w for o in self.objects for w in label_words(o["label"]).split(" ")}
        terms = [t for t in UNGROUNDED_TERMS if t not in labels and singular(t) not in labels]
        alts = "|".join(f"{re.escape(t)}|{re.escape(plural(t))}" for t in terms)
        self.ungrounded_re = re.compile(rf"\b(?P<term>{alts})\b", re.I)

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
        tokens = {t.lower() for s in strings for t in _WORD_RE.findall(s)}
        return tokens | _COMMON_NAMES

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

    def count(self, key: str, cells: Iterable[int] | None = None) -> int:
        ts = targets_for(self.facts, key)
        if cells is not None:
            keep = set(cells)
            ts = [t for t in ts if int(t["cell"]) in keep]
        return len(ts)


_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


# == text helpers ==================================================================================
def _clauses(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _CLAUSE_SEP_RE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def _clause_of(clauses: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    for a, b in clauses:
        if a <= pos < b:
            return a, b
    return (0, 0)


def _number(tok: str) -> float:
    return float(tok.replace(",", ""))


def _decimals(tok: str) -> int:
    return len(tok.partition(".")[2])


def _count_value(tok: str) -> int:
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


def _cell_refs(text: str, skip_starts: set[int]) -> list[_Ref]:
    """All grid-cell references of a text: numbered lists and position names. A number that starts a
    target count ("cells 1 and 2 and 2 planes") ends the list."""
    refs: list[_Ref] = []
    for m in _CELL_LIST_RE.finditer(text):
        base = m.start("items")
        cells: list[int] = []
        invalid: list[int] = []
        end = m.start("items")
        for it in _CELL_ITEM_RE.finditer(m.group("items")):
            if base + it.start("a") in skip_starts:
                break
            a = int(it.group("a"))
            b = int(it.group("b")) if it.group("b") else a
            end = base + it.end()
            for n in range(a, b + 1) if b >= a else (a, b):
                (cells if 1 <= n <= 9 else invalid).append(n)
        if cells or invalid:
            refs.append(_Ref(m.start(), end, cells, invalid))
    for m in _POSITION_RE.finditer(text):
        if m.group("c"):
            cell = 5
        else:
            cell = 3 * _V_POS[m.group("v").lower()] + _H_POS[m.group("h").lower()] + 1
        refs.append(_Ref(m.start(), m.end(), [cell], []))
    refs.sort(key=lambda r: r.start)
    return refs


def _mask_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for a, b in spans:
        for i in range(a, b):
            chars[i] = " "
    return "".join(chars)


def _date_spans(text: str, facts_date: date) -> tuple[list[tuple[int, int]], list[str]]:
    """Spans of dates in a text and the problems with them (a date, month or year that is not the
    acquisition's)."""
    spans: list[tuple[int, int]] = []
    problems: list[str] = []
    for m in _ISO_DATE_RE.finditer(text):
        spans.append(m.span())
        if m.group(0) != facts_date.isoformat():
            problems.append(f"date {m.group(0)} is not the acquisition date {facts_date.isoformat()}")
    masked = _mask_spans(text, spans)
    for m in _TEXT_DATE_RE.finditer(masked):
        month = m.group("month")
        has_number = any(m.group(g) for g in ("d1", "d2", "y"))
        if month == "May" and not has_number:
            continue  # the modal verb, caught as a hedge
        spans.append(m.span())
        mi = _MONTHS.index(month) + 1
        day = m.group("d1") or m.group("d2")
        year = m.group("y")
        if (
            mi != facts_date.month
            or (day and int(day) != facts_date.day)
            or (year and int(year) != facts_date.year)
        ):
            problems.append(
                f"date '{m.group(0).strip()}' is not the acquisition date {facts_date.isoformat()}"
            )
    masked = _mask_spans(text, spans)
    for m in _YEAR_RE.finditer(masked):
        spans.append(m.span())
        if int(m.group("y")) != facts_date.year:
            problems.append(f"year {m.group('y')} is not the acquisition year {facts_date.year}")
    return spans, problems


# == the checks ====================================================================================
def _check_hedges(where: str, text: str, date_spans: list[tuple[int, int]]) -> list[str]:
    out = []
    for m in _HEDGE_RE.finditer(text):
        if m.group("word").lower() == "may" and any(a <= m.start() < b for a, b in date_spans):
            continue
        out.append(f"{where}: hedge word '{m.group('word')}'")
    for m in _REFUSAL_RE.finditer(text):
        out.append(f"{where}: refusal / non-answer '{m.group(0)}'")
    return out


_FIELD_TOPICS = {
    "water": {"water", "land", "nodata"},
    "buildings": {"bright"},
    "targets": set(),
}


def _check_percentages(ctx: _Context, field: str, text: str, refs: list[_Ref]) -> list[str]:
    """Each percentage must match a fraction of a surface type named in its clause (of the whole chip,
    or of the cells the clause names), or, when the clause names none, any fraction the field may
    state."""
    out = []
    clauses = _clauses(text)
    for m in _PERCENT_RE.finditer(text):
        a, b = _clause_of(clauses, m.start())
        topics = {t for t, rx in _TOPIC_RES.items() if rx.search(text, a, b)}
        if topics:
            cells = [c for r in refs if a <= r.start < b for c in r.cells]
            topics &= _FIELD_TOPICS.get(field, set(_TOPIC_RES))
            allowed = [f for t in sorted(topics) for f in ctx.topic_fractions(t, cells)]
        else:
            allowed = ctx.fractions(field)
        cmp = re.sub(r"\s+", " ", (m.group("cmp") or "").lower())
        if m.group("num"):
            n = _number(m.group("num"))
            if cmp in ("less than", "fewer than", "under", "below"):
                ok = any(f < n + 1e-9 for f in allowed)
            elif cmp in ("more than", "over", "above"):
                ok = any(f > n - 1e-9 for f in allowed)
            elif cmp == "at least":
                ok = any(f >= n - 0.5 for f in allowed)
            elif cmp in ("at most", "up to"):
                ok = any(f <= n + 0.5 for f in allowed)
            else:
                ok = any(abs(f - n) <= PERCENT_TOLERANCE + 1e-6 for f in allowed)
        else:
            lo = _number(m.group("blo") or m.group("rlo"))
            hi = _number(m.group("bhi") or m.group("rhi"))
            ok = any(lo - 0.5 <= f < hi + 1.0 for f in allowed)
        if not ok:
            out.append(f"{field}: '{m.group(0).strip()}' matches no fraction of the facts it may state")
    return out


def _check_measures(ctx: _Context, field: str, text: str) -> list[str]:
    f = ctx.facts
    chip, place, loc = f["chip"], f.get("place"), f["location"]
    metres = [chip["width_m"], chip["height_m"], chip["pixel_size_m"]]
    metres += [chip[k] for k in ("pixel_size_x_m", "pixel_size_y_m") if k in chip]
    metres += [o["length_m"] for o in ctx.objects if o.get("length_m") is not None]
    metres += [d["length_m"] for d in ctx.detections if d.get("length_m") is not None]  # null: unknown size
    if place:
        metres.append(place["distance_km"] * 1000.0)
    s = ctx.surface
    dbs = [s["mean_db"], s["std_db"], *(d["peak_db"] for d in ctx.detections)]
    dbs += [
        s[k]
        for k in ("water_threshold_db", "water_threshold_cross_db", "bright_threshold_db")
        if s.get(k) is not None
    ]
    degrees = [abs(loc["centre_lat"]), abs(loc["centre_lon"])]
    out = []
    for m in _MEASURE_RE.finditer(text):
        unit = m.group("unit").lower()
        for tok in (m.group("a"), m.group("b")):
            if tok is None:
                continue
            v = _number(tok)
            rnd = 0.5 * 10.0 ** -_decimals(tok)
            if unit == "°":
                ok = any(abs(v - t) <= rnd + 1e-9 for t in degrees)
                what = "coordinate"
            elif unit == "db":
                ok = any(abs(v - abs(t)) <= max(rnd, 0.05) + 1e-9 for t in dbs)
                what = "dB value"
            else:
                factor = 1000.0 if unit.startswith("k") else 1.0
                vm = v * factor
                ok = any(abs(vm - t) <= max(rnd * factor, 0.05 * t, 0.5) + 1e-9 for t in metres)
                what = "length / distance"
            if not ok:
                out.append(f"{field}: {what} '{m.group(0).strip()}' matches nothing in the facts")
    return out


def _check_sizes(ctx: _Context, field: str, text: str) -> list[str]:
    """A stated size "W x H" must be the chip's (width_m, height_m) or its pixel size (x, y), in that order:
    the two differ for degree pixels, and a swapped pair is false."""
    chip = ctx.facts["chip"]
    pairs = [(chip["width_m"], chip["height_m"])]
    pairs.append(
        (chip.get("pixel_size_x_m", chip["pixel_size_m"]), chip.get("pixel_size_y_m", chip["pixel_size_m"]))
    )
    out = []
    for m in _SIZE_RE.finditer(text):
        factor = 1000.0 if m.group("unit") == "km" else 1.0
        vals = []
        for tok in (m.group("a"), m.group("b")):
            rnd = 0.5 * 10.0 ** -_decimals(tok) * factor
            vals.append((_number(tok) * factor, rnd))
        if not any(
            all(
                abs(v - t) <= max(rnd, 0.005 * t, 0.05) + 1e-9 for (v, rnd), t in zip(vals, pair, strict=True)
            )
            for pair in pairs
        ):
            out.append(
                f"{field}: size '{m.group(0).strip()}' is not the chip's width x height nor its pixel size"
            )
    return out


def _check_counts(ctx: _Context, field: str, text: str, refs: list[_Ref]) -> list[str]:
    out = []
    for m in ctx.count_re.finditer(text):
        mods = {w.lower() for w in m.group("mods").split()}
        if mods & _SKIP_MODS:
            continue
        key = canonical_label(m.group("noun"))
        n = _count_value(m.group("count"))
        cells: list[int] | None = None
        after = _AFTER_COUNT_CELLS_RE.match(text, m.end())
        if after:
            ref = next((r for r in refs if r.start == after.end()), None)
            if ref is not None:
                cells = ref.cells
        true = ctx.count(key, cells)
        if n != true:
            where = f" in cells {','.join(map(str, cells))}" if cells is not None else ""
            out.append(f"{field}: '{m.group(0).strip()}' says {n} {key}(s){where} but the facts have {true}")
    return out


def _topic_at(
    ctx: _Context, field: str, text: str, clause: tuple[int, int], ref: _Ref, refs: list[_Ref]
) -> tuple[str, str | None, bool, bool] | None:
    """(topic, class key, negated, mostly) of a cell reference, from the keywords of its clause."""
    a, b = clause
    hits: list[tuple[int, int, str, str | None]] = []  # (start, end, topic, key)
    for topic, rx in _TOPIC_RES.items():
        for m in rx.finditer(text, a, b):
            hits.append((m.start(), m.end(), topic, None))
    for m in ctx.noun_re.finditer(text, a, b):
        hits.append((m.start(), m.end(), "target", canonical_label(m.group("noun"))))
    hits = [h for h in hits if not (h[0] < ref.end and h[1] > ref.start)]
    if not hits:  # no keyword in the clause: the field's own topic, if it has one
        default = _FIELD_TOPIC.get(field)
        if default is None:
            return None
        return default, (GENERIC_KEY if default == "target" else None), False, False
    # Prefer keywords of the same comma-separated part of the clause ("the tanks sit in cells 1, 4
    # and 7, the ships in cells 6 and 9"); commas inside cell references do not separate.
    in_refs = [(r.start, r.end) for r in refs]
    commas = [i for i in range(a, b) if text[i] == "," and not any(s <= i < e for s, e in in_refs)]
    seg_a = max([i for i in commas if i < ref.start], default=a)
    seg_b = min([i for i in commas if i >= ref.end], default=b)
    same = [h for h in hits if seg_a <= h[0] and h[1] <= seg_b]
    prio = _FIELD_TOPIC.get(field)
    pool = same or hits
    pool = [h for h in pool if h[2] == prio] or pool

    def dist(h: tuple[int, int, str, str | None]) -> int:
        return ref.start - h[1] if h[1] <= ref.start else h[0] - ref.end

    h = min(pool, key=dist)
    window = text[max(a, h[0] - 40) : h[0]]
    negated = re.search(rf"\b{_NEGATION}\b(?:\s+[^\W\d_]+){{0,2}}\s*$", window, re.I) is not None
    between = text[h[1] : ref.start] if h[1] <= ref.start else text[ref.end : h[0]]
    mostly = _MOSTLY_RE.search(between) is not None
    return h[2], h[3], negated, mostly


def _check_cells(ctx: _Context, field: str, text: str, refs: list[_Ref]) -> list[str]:
    out = []
    clauses = _clauses(text)
    exclusive_done: set[tuple[int, int]] = set()
    for ref in refs:
        for n in ref.invalid:
            out.append(f"{field}: cell {n} does not exist (cells are 1..9)")
        if not ref.cells:
            continue
        topic = _topic_at(ctx, field, text, _clause_of(clauses, ref.start), ref, refs)
        if topic is None:
            continue
        kind, key, negated, mostly = topic
        for c in ref.cells:
            cell = ctx.cells[c]
            w, br, v = cell["water_fraction"], cell["bright_fraction"], cell["valid_fraction"]
            if kind == "water":
                ok = w < WATER_PRESENT if negated else w >= (MOSTLY if mostly else WATER_PRESENT)
            elif kind == "land":
                ok = w > 1.0 - WATER_PRESENT if negated else w < (MOSTLY if mostly else 1.0 - WATER_PRESENT)
            elif kind == "bright":
                ok = br < BRIGHT_PRESENT if negated else br >= BRIGHT_PRESENT
            elif kind == "nodata":
                ok = v < (NODATA_CELL if mostly else NODATA_PARTLY)
            else:
                assert key is not None
                inside = c in ctx.target_cells(key)
                ok = not inside if negated else inside
            if not ok:
                what = f"{'no ' if negated else ''}{'mostly ' if mostly and not negated else ''}{key or kind}"
                if kind in ("water", "land"):
                    fact = f"water fraction {w:.2f}"
                elif kind == "bright":
                    fact = f"bright fraction {br:.2f}"
                elif kind == "nodata":
                    fact = f"valid fraction {v:.2f}"
                else:
                    fact = (
                        f"the {key}(s) are in cells {sorted(ctx.target_cells(key or GENERIC_KEY)) or 'none'}"
                    )
                out.append(f"{field}: cell {c} is said to hold {what} but the facts disagree ({fact})")
        clause = _clause_of(clauses, ref.start)
        if clause not in exclusive_done:
            exclusive_done.add(clause)
            out += _check_only(ctx, field, text, clause, refs, topic)
    return out


def _check_only(
    ctx: _Context,
    field: str,
    text: str,
    clause: tuple[int, int],
    refs: list[_Ref],
    topic: tuple[str, str | None, bool, bool],
) -> list[str]:
    """An exclusive reference ("water lies only in cell 1") must name every cell that holds it."""
    kind, key, negated, mostly = topic
    a, b = clause
    if negated or kind == "nodata" or not _ONLY_RE.search(text, a, b):
        return []
    named = {c for r in refs if a <= r.start < b for c in r.cells}
    if kind == "target":
        holding = ctx.target_cells(key or GENERIC_KEY)
    else:
        holding = set()
        for c, cell in ctx.cells.items():
            w, br = cell["water_fraction"], cell["bright_fraction"]
            if cell["valid_fraction"] >= NODATA_CELL and (
                (kind == "water" and w >= (MOSTLY if mostly else WATER_PRESENT))
                or (kind == "land" and w < (MOSTLY if mostly else 1.0 - WATER_PRESENT))
                or (kind == "bright" and br >= BRIGHT_PRESENT)
            ):
                holding.add(c)
    missing = sorted(holding - named)
    if not missing:
        return []
    return [
        f"{field}: '{text[a:b].strip()}' says only cells {sorted(named)} hold {key or kind} but cells {missing} do too"
    ]


def _check_global_negations(ctx: _Context, field: str, text: str, refs: list[_Ref]) -> list[str]:
    """'no open water' / 'no strong scatterers' about the whole chip (no cell named in the clause)."""
    out = []
    clauses = _clauses(text)
    for a, b in clauses:
        if any(a <= r.start < b for r in refs):
            continue
        for topic, limit, value in (
            ("water", GLOBAL_ABSENT, ctx.surface["water_fraction"]),
            ("bright", GLOBAL_ABSENT, ctx.surface["bright_fraction"]),
        ):
            for m in _TOPIC_RES[topic].finditer(text, a, b):
                window = text[max(a, m.start() - 40) : m.start()]
                neg = re.search(
                    r"\b(?:no|without|free\s+of|lacks?|lacking)\b(?:\s+[^\W\d_]+){0,2}\s*$", window, re.I
                )
                if neg and value >= limit:
                    out.append(
                        f"{field}: '{text[a:b].strip()}' denies {topic} but the facts have {value:.2f}"
                    )
        water = ctx.surface["water_fraction"]
        for m in _TOTAL_RE.finditer(text, a, b):
            denied, value = ("water", water) if m.group("land") else ("land", 1.0 - water)
            if value >= GLOBAL_ABSENT:
                out.append(f"{field}: '{m.group(0)}' denies {denied} but the facts have {value:.2f}")
    return out


def _check_names(ctx: _Context, field: str, text: str) -> list[str]:
    out = []
    for m in _WORD_RE.finditer(text):
        tok = m.group(0)
        if not tok[0].isupper() or tok.lower() in ctx.allowed_names:
            continue
        if m.start() > 0 and text[m.start() - 1].isdigit():
            continue  # the letter of an alphanumeric code ("1B" of Sentinel-1B): checked as a sensor
        before = text[: m.start()].rstrip(" \t\n\"'“‘")
        if not before or before[-1] in ".!?:;":
            continue  # sentence-initial: an ordinary word can be capitalised here
        out.append(
            f"{field}: name '{tok}' is not in the facts (place: {ctx.facts.get('place') and ctx.facts['place']['name']})"
        )
    place = ctx.facts.get("place")
    for m in _DIRECTION_RE.finditer(text):
        if not place or place["direction"] == "at":
            continue
        if not m.group("rest").lower().startswith(place["name"].lower()):
            continue
        d = re.sub(r"[\s-]", "", m.group("dir").lower())
        code = "".join(
            {"north": "N", "south": "S", "east": "E", "west": "W"}[p]
            for p in re.findall(r"north|south|east|west", d)
        )
        diff = abs(_COMPASS_DEG[code] - _COMPASS_DEG[place["direction"]]) % 360
        if min(diff, 360 - diff) > 45:
            out.append(
                f"{field}: '{m.group('dir')} of {place['name']}' but the facts say {place['direction']}"
            )
    return out


def _check_acquisition(ctx: _Context, field: str, text: str) -> list[str]:
    acq = ctx.facts["acquisition"]
    out = []
    for m in _SEASON_RE.finditer(text):
        if m.group("season").lower() != (acq.get("season") or ""):
            out.append(f"{field}: season '{m.group('season')}' but the facts say {acq.get('season')}")
    for m in _ORBIT_RE.finditer(text):
        if m.group("orbit").lower() != (acq.get("orbit_direction") or ""):
            out.append(f"{field}: orbit '{m.group('orbit')}' but the facts say {acq.get('orbit_direction')}")
    pols = {p.upper() for p in acq.get("polarisations") or []}
    for m in _POL_RE.finditer(text):
        if m.group("pol") not in pols:
            out.append(f"{field}: polarisation {m.group('pol')} is not among {sorted(pols)}")
    for m in _CONVENTION_RE.finditer(text):  # `unknown` in the facts: no convention may be named
        said = (m.group("word") or _GREEK[m.group("greek").lower()]).lower() + "0"
        if said != acq.get("backscatter"):
            out.append(f"{field}: '{m.group(0)}' but the facts say backscatter {acq.get('backscatter')}")
    sensor = re.sub(r"[^a-z0-9]", "", (acq.get("sensor") or "").lower())
    for m in _SENSOR_RE.finditer(text):
        said = re.sub(r"[^a-z0-9]", "", m.group("sensor").lower())
        if not (sensor.startswith(said) or said.startswith(sensor)):
            out.append(f"{field}: sensor '{m.group('sensor')}' but the facts say {acq.get('sensor')}")
    return out


def _check_claims(ctx: _Context, field: str, text: str) -> list[str]:
    out = []
    for m in _BOUNDARY_RE.finditer(text):
        window = text[max(0, m.start() - 30) : m.start()]
        if re.search(rf"\b{_NEGATION}\b(?:\s+[^\W\d_]+){{0,2}}\s*$", window, re.I):
            if has_boundary(ctx.facts):
                out.append(f"{field}: denies a '{m.group(0)}' but the facts have a land/water boundary")
            continue
        w = ctx.surface["water_fraction"]
        if not (has_boundary(ctx.facts) or WATER_PRESENT <= w <= 1.0 - WATER_PRESENT):
            out.append(f"{field}: '{m.group(0)}' but the facts have no land/water boundary")
    masked = text
    for s in ctx.place_strings():
        masked = re.sub(re.escape(s), " ", masked, flags=re.I)
    for m in ctx.ungrounded_re.finditer(masked):
        out.append(f"{field}: '{m.group('term')}' is not supported by the facts")
    return out


def check_caption(
    facts: Mapping[str, Any],
    fields: Mapping[str, str | None],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Problems of the caption fields (see the module docstring)."""
    return _caption_problems(_Context(facts, classes), fields)


def _caption_problems(ctx: _Context, fields: Mapping[str, str | None]) -> list[str]:
    facts = ctx.facts
    facts_date = date.fromisoformat(facts["acquisition"]["date"])
    out: list[str] = []
    for name in fields:
        if name not in CAPTION_FIELDS:
            out.append(f"{name}: not a caption field")
    if fields.get("roads"):
        out.append("roads: the facts name no roads, so the field must be null")
    for name in CAPTION_FIELDS:
        text = fields.get(name)
        if not text:
            continue
        date_spans, problems = _date_spans(text, facts_date)
        out += [f"{name}: {p}" for p in problems]
        out += _check_hedges(name, text, date_spans)
        plain = _mask_spans(text, date_spans)
        count_starts = {m.start("count") for m in ctx.count_re.finditer(plain)}
        refs = _cell_refs(plain, count_starts)
        out += _check_percentages(ctx, name, plain, refs)
        out += _check_measures(ctx, name, plain)
        out += _check_sizes(ctx, name, plain)
        out += _check_counts(ctx, name, plain, refs)
        out += _check_cells(ctx, name, plain, refs)
        out += _check_global_negations(ctx, name, plain, refs)
        out += _check_names(ctx, name, text)
        out += _check_acquisition(ctx, name, text)
        out += _check_claims(ctx, name, text)
    return out


# == task QA =======================================================================================
_NO_CLASS = "the question names no known class"


def _question_key(ctx: _Context, question: str) -> tuple[str | None, str | None]:
    """The class a question asks about, or (None, problem)."""
    keys = {canonical_label(m.group("noun")) for m in ctx.noun_re.finditer(question)}
    specific = keys - {GENERIC_KEY}
    if len(specific) == 1:
        return specific.pop(), None
    if len(specific) > 1:
        return None, f"the question names several classes {sorted(specific)}"
    if keys:
        return GENERIC_KEY, None
    return None, _NO_CLASS


def _frame_box(ctx: _Context, item: Mapping[str, Any]) -> list[int]:
    """An item's box in the QA frame (the chip's pixels, schemas/frames.py), from its normalized box."""
    chip = ctx.facts["chip"]
    norm = item.get("bbox_norm")
    if norm is None:  # a fact sheet written before bbox_norm: its chip-pixel box
        return [int(v) for v in item["bbox"]]
    return box_to_frame(norm, chip["width_px"], chip["height_px"])


def _check_frame(ctx: _Context, question: str) -> list[str]:
    """A question with boxes must name their frame: the chip image's own pixels ("W x H image")."""
    chip = ctx.facts["chip"]
    want = qa_frame(chip["width_px"], chip["height_px"])
    said = stated_frame(question)
    if said is None:
        return [f"the question does not state the frame of its boxes ('{want.phrase}')"]
    if said != want:
        return [
            f"the question states a {said.width} x {said.height} frame but the chip is {want.width} x {want.height}"
        ]
    return []


def _check_detection_answer(ctx: _Context, key: str, answer: str) -> list[str]:
    truth = [dict(t, bbox=_frame_box(ctx, t)) for t in targets_for(ctx.facts, key)]
    if answer == "None":
        return [] if not truth else [f"answer None but the facts have {len(truth)} {key}(s)"]
    try:
        items = json.loads(answer)
    except json.JSONDecodeError as e:
        return [f"detection answer is neither None nor JSON ({e.msg})"]
    if not isinstance(items, list) or not items:
        return ["detection answer must be a non-empty JSON list (or None)"]
    out: list[str] = []
    boxes: list[tuple[list[float], str]] = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or set(it) != {"bbox_2d", "label"}:
            out.append(f"item {i} must be an object with exactly bbox_2d and label")
            continue
        box, label = it["bbox_2d"], it["label"]
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            out.append(f"item {i}: bbox_2d must be 4 numbers [x1, y1, x2, y2]")
            continue
        if not isinstance(label, str) or not (label_matches(key, label) or canonical_label(label) == key):
            out.append(f"item {i}: label {label!r} is not a {key}")
            continue
        boxes.append(([float(v) for v in box], label))
    if out:
        return out
    if len(boxes) != len(truth):
        out.append(f"{len(boxes)} boxes but the facts have {len(truth)} {key}(s)")
    unmatched = list(range(len(truth)))
    for box, label in boxes:
        best = max(unmatched, key=lambda j: iou(box, truth[j]["bbox"]), default=None)
        if best is None or iou(box, truth[best]["bbox"]) < IOU_MATCH:
            out.append(f"box {[int(v) if v.is_integer() else v for v in box]} matches no {key} of the facts")
            continue
        t = truth[best]
        if canonical_label(label) != canonical_label(t["label"]):
            out.append(f"box {t['bbox']} is labelled {label!r} but the facts say {t['label']!r}")
        unmatched.remove(best)
    return out


def _check_one_qa(ctx: _Context, item: Mapping[str, Any]) -> list[str]:
    task, q, a = item.get("task"), item.get("question"), item.get("answer")
    if task not in QA_TASKS:
        return [f"unknown task {task!r}"]
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        return ["question and answer must be non-empty strings"]
    out = _check_hedges("question", q, []) + _check_hedges("answer", a, [])
    if task in ("classification", "detection"):
        out += _check_frame(ctx, q)
    if task == "classification":
        m = _BOX_RE.search(q)
        if not m:
            return [*out, "classification question names no box [x1, y1, x2, y2]"]
        box = [float(m.group(g)) for g in ("x1", "y1", "x2", "y2")]
        pool = [dict(o, bbox=_frame_box(ctx, o)) for o in ctx.objects]
        pool += [dict(d, label=DETECTION_KEY, bbox=_frame_box(ctx, d)) for d in ctx.detections]
        best = max(pool, key=lambda o: iou(box, o["bbox"]), default=None)
        if best is None or iou(box, best["bbox"]) < IOU_MATCH:
            return [*out, f"no object of the facts at box {m.group(0)}"]
        if not _LABEL_ANSWER_RE.match(a):
            return [*out, f"classification answer {a!r} is not a bare label"]
        said = canonical_label(a)
        if not (
            said == canonical_label(best["label"])
            or (said != GENERIC_KEY and label_matches(said, best["label"]))
        ):
            out.append(f"answer {a!r} but the object at {best['bbox']} is a {best['label']!r}")
        return out
    key, problem = _question_key(ctx, q)
    if key is None:
        if problem == _NO_CLASS and a in ("0", "None"):
            return out  # a class the facts do not know has no targets: a consistent negative
        return [*out, problem or "unknown class"]
    truth = targets_for(ctx.facts, key)
    if task == "counting":
        if not _COUNT_ANSWER_RE.match(a):
            out.append(f"counting answer {a!r} is not a bare integer")
        elif int(a) != len(truth):
            out.append(f"counting answer {a} but the facts have {len(truth)} {key}(s)")
    elif task == "localization":
        true_cells = cells_of(truth)
        if not _LOC_ANSWER_RE.match(a):
            out.append(f"localization answer {a!r} is not 'None' or ascending cells like '1,2,7'")
        else:
            said_cells = [] if a == "None" else [int(c) for c in a.split(",")]
            if said_cells != sorted(set(said_cells)):
                out.append(f"localization answer {a!r} is not strictly ascending")
            if sorted(set(said_cells)) != true_cells:
                out.append(f"localization answer {a!r} but the {key}(s) are in cells {true_cells or 'None'}")
    else:
        out += _check_detection_answer(ctx, key, a)
    return out


def check_qa(
    facts: Mapping[str, Any],
    qa: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Problems of the task QA (see the module docstring)."""
    return _qa_problems(_Context(facts, classes), qa)


def _qa_problems(ctx: _Context, qa: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for i, item in enumerate(qa):
        out += [f"qa[{i}] ({item.get('task')}): {p}" for p in _check_one_qa(ctx, item)]
    return out


def check_text(
    facts: dict[str, Any],
    fields: Mapping[str, str | None],
    qa: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Every problem of a caption (field by field) and its task QA against the fact sheet; empty when
    the text is consistent. `classes`: extra class names questions may ask about (negatives)."""
    ctx = _Context(facts, classes)
    return _caption_problems(ctx, fields) + _qa_problems(ctx, qa)


__all__ = [
    "CELL_NAMES",
    "COMMON_CLASSES",
    "DETECTION_KEY",
    "GENERIC_KEY",
    "HEDGE_WORDS",
    "NUMBER_WORDS",
    "PERCENT_STEP",
    "REFUSAL_PATTERNS",
    "UNGROUNDED_TERMS",
    "canonical_label",
    "cells_of",
    "check_caption",
    "check_qa",
    "check_text",
    "format_percent",
    "has_boundary",
    "iou",
    "label_matches",
    "label_words",
    "plural",
    "round_percent",
    "targets_for",
    "water_cells",
]
