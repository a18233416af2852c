"""What a fact sheet says about every class text may name: labelled object classes, the CFAR bright point
targets, OpenStreetMap features and land-cover classes, each by its vocabulary name (schemas/vocabulary.py).

One home for the rules of issue #9's contract, shared by the QA writer (text/qa.py) and the checker
(text/checks/): which classes have a count, where they are, and which may be stated ABSENT. Negatives
are allowed only for classes in `labels.classes_labelled` (labelled objects), OSM features in
`ext.osm.queried` ("not mapped in OpenStreetMap") and the CFAR detections; a land-cover class is
never stated absent (the map's legend is not a list of what was looked for in the chip).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.vocabulary import LAND_COVER_PRODUCTS, OSM_FEATURES
from triplet_builder.facts import functionality
from triplet_builder.text.conventions import DETECTION_KEY, cells_of, object_class, plural, targets_for

Source = Literal["labels", "detections", "osm"]

PRODUCT_NAMES: dict[str, str] = {"esa-worldcover": "ESA WorldCover", "dynamic-world": "Dynamic World"}
OSM_COUNTED = tuple(f for f, kind in OSM_FEATURES.items() if kind == "point")  # counting makes sense
OSM_PHRASE_RE = re.compile(r"\b(?:OpenStreetMap|OSM)\b", re.I)
LABELS_PHRASE_RE = re.compile(r"\blabel(?:led|ed|s)?\b", re.I)


@dataclass(frozen=True)
class ClassFacts:
    """One nameable class of one source: its count, cells and targets (with boxes, for objects and
    detections), and whether the text may state it absent."""

    key: str  # vocabulary name (object class, OSM feature) or DETECTION_KEY
    source: Source
    count: int
    cells: tuple[int, ...]
    negative_ok: bool
    targets: tuple[dict[str, Any], ...] = field(default=(), compare=False)


def labelled_classes(facts: Mapping[str, Any]) -> list[str]:
    """The classes the chip's label file annotates (`labels.classes_labelled`); without a `labels`
    section (a sheet written before it), the classes of the objects present."""
    labels = facts.get("labels")
    if labels:
        return sorted(labels.get("classes_labelled") or [])
    return sorted({object_class(o) for o in facts.get("objects") or []})


def object_facts(facts: Mapping[str, Any]) -> list[ClassFacts]:
    """Labelled object classes: every labelled class (zeros included, negatives allowed) when the sheet
    has `labels`; else the classes present (no negatives: nothing says what was looked for)."""
    has_labels = bool(facts.get("labels"))
    out = []
    for key in labelled_classes(facts):
        ts = targets_for(facts, key)
        out.append(ClassFacts(key, "labels", len(ts), tuple(cells_of(ts)), has_labels, tuple(ts)))
    return out


def detection_facts(facts: Mapping[str, Any]) -> ClassFacts | None:
    """The CFAR bright point targets, when the sheet has a detections section (a negative is allowed:
    the detector looked at the whole chip)."""
    if facts.get("detections") is None:
        return None
    ts = targets_for(facts, DETECTION_KEY)
    return ClassFacts(DETECTION_KEY, "detections", len(ts), tuple(cells_of(ts)), True, tuple(ts))


def osm_section(facts: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (facts.get("ext") or {}).get("osm")


def osm_facts(facts: Mapping[str, Any]) -> dict[str, ClassFacts]:
    """OSM features by name: every queried feature (absent ones with count 0, a negative) and any
    feature present (the section lists only queried ones, but a present one is a fact either way)."""
    osm = osm_section(facts)
    if not osm:
        return {}
    feats = osm.get("features") or {}
    out = {}
    for name in sorted(set(osm.get("queried") or []) | set(feats)):
        f = feats.get(name)
        count, cells = (int(f["count"]), tuple(sorted(f["cells"]))) if f else (0, ())
        out[name] = ClassFacts(name, "osm", count, cells, name in (osm.get("queried") or []))
    return out


def land_cover(facts: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (facts.get("ext") or {}).get("land_cover")


def land_cover_product_phrase(lc: Mapping[str, Any]) -> str:
    """How text names the map: "ESA WorldCover 2021", "Dynamic World" (+ its date range when known)."""
    name = PRODUCT_NAMES[lc["product"]]
    if lc.get("year"):
        return f"{name} {lc['year']}"
    dr = lc.get("date_range")
    return f"{name} ({dr[0]} to {dr[1]})" if dr else name


def land_cover_names() -> dict[str, str]:
    """Every land-cover class name of every legend -> its product."""
    return {name: product for product, legend in LAND_COVER_PRODUCTS.items() for name in legend.values()}


def class_forms(name: str) -> set[str]:
    """The forms of a vocabulary name text may use: singular and plural ("storage tank(s)")."""
    return {name, plural(name)}


def scene_type(facts: Mapping[str, Any]) -> str | None:
    """The chip's scene type (triplet_builder/facts/functionality.py: the primary derived function by a
    documented priority), or None when the rules derive none."""
    return functionality.scene_type(facts)


__all__ = [
    "LABELS_PHRASE_RE",
    "OSM_COUNTED",
    "OSM_PHRASE_RE",
    "PRODUCT_NAMES",
    "ClassFacts",
    "class_forms",
    "detection_facts",
    "labelled_classes",
    "land_cover",
    "land_cover_names",
    "land_cover_product_phrase",
    "object_facts",
    "osm_facts",
    "osm_section",
    "scene_type",
]
