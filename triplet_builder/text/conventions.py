"""The wording conventions shared by the writers and the consistency checker: percent rounding, cell
names, surface thresholds, class words and which facts a target class means. One home, so the
writers and the checker cannot drift apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from schemas.vocabulary import OBJECT_CLASSES, normalise_object_class

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

# FUSAR-GPT's targets: kept for callers of the `classes` argument; negatives now come from the facts
# (labels.classes_labelled, ext.osm.queried, the CFAR detections), never from a configured list.
COMMON_CLASSES: tuple[str, ...] = ("ship", "aircraft")
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
    "plane": "aircraft", "aircraft": "aircraft", "airplane": "aircraft", "aeroplane": "aircraft",
    "airliner": "aircraft",
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
    """The class a label or noun phrase names: the vocabulary class of schemas/vocabulary.py where the
    phrase maps to one ("Vessels" -> "ship", "planes" -> "aircraft"), else singular lower-case words; the
    CFAR detections -> DETECTION_KEY; "targets" / "objects" -> GENERIC_KEY."""
    words = label_words(text).split(" ")
    if not words or not words[0]:
        return ""
    words[-1] = singular(words[-1])
    phrase = " ".join(words)
    if phrase in DETECTION_PHRASES:
        return DETECTION_KEY
    if phrase in GENERIC_WORDS:
        return GENERIC_KEY
    vocab = normalise_object_class(phrase)
    if vocab != "other":
        return vocab
    return SYNONYMS.get(phrase, phrase)


def object_class(obj: Mapping[str, Any]) -> str:
    """The vocabulary class of a labelled object: its `class` (the facts contract), or, for a sheet
    written before `class` existed, its label normalised the same way."""
    cls = obj.get("class")
    return str(cls) if cls else normalise_object_class(obj.get("label"))


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
    if key in OBJECT_CLASSES and key != "other":
        return [o for o in objects if object_class(o) == key]
    return [o for o in objects if object_class(o) == "other" and label_matches(key, o["label"])]


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
