"""Task QA answers in FUSAR-GPT's formats (counting, localization, detection, classification) against
the fact sheet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from schemas import QA_TASKS
from schemas.frames import box_to_frame, qa_frame, stated_frame
from schemas.vocabulary import OSM_FEATURES
from triplet_builder.text.checks.acquisition import check_hedges
from triplet_builder.text.checks.context import (
    Context,
)
from triplet_builder.text.checks.patterns import (
    BOX_RE,
    COUNT_ANSWER_RE,
    LABEL_ANSWER_RE,
    LOC_ANSWER_RE,
)
from triplet_builder.text.classes import (
    OSM_PHRASE_RE,
    PRODUCT_NAMES,
    class_forms,
    labelled_classes,
    land_cover,
    land_cover_product_phrase,
    osm_facts,
    scene_type,
)
from triplet_builder.text.conventions import (
    DETECTION_KEY,
    GENERIC_KEY,
    IOU_MATCH,
    canonical_label,
    cells_of,
    iou,
    label_matches,
    object_class,
    targets_for,
)

LAND_COVER_Q_RE = re.compile(r"\bland[\s-]?cover\b", re.I)
SCENE_Q_RE = re.compile(r"\bscene\b.*\b(?:type|function\w*)\b|\b(?:type|function\w*)\b.*\bscene\b", re.I)
CELL_IN_Q_RE = re.compile(r"\bcell\s+(\d+)\b", re.I)
YEAR_IN_Q_RE = re.compile(r"\b((?:19|20)\d\d)\b")
OSM_NAME_RE = re.compile(
    r"(?<![\w-])(?P<feat>"
    + "|".join(sorted((re.escape(f) for n in OSM_FEATURES for f in class_forms(n)), key=len, reverse=True))
    + r")(?![\w-])",
    re.I,
)
_NO_CLASS = "the question names no known class"


def canonical_osm(name: str) -> str:
    """The OSM feature a singular or plural form names."""
    name = name.lower()
    return next((n for n in OSM_FEATURES if name in class_forms(n)), name)


def _question_key(ctx: Context, question: str) -> tuple[str | None, str | None]:
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


def _frame_box(ctx: Context, item: Mapping[str, Any]) -> list[int]:
    """An item's box in the QA frame (the chip's pixels, schemas/frames.py), from its normalized box."""
    chip = ctx.facts["chip"]
    norm = item.get("bbox_norm")
    if norm is None:  # a fact sheet written before bbox_norm: its chip-pixel box
        return [int(v) for v in item["bbox"]]
    return box_to_frame(norm, chip["width_px"], chip["height_px"])


def _check_frame(ctx: Context, question: str) -> list[str]:
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


def _check_detection_answer(ctx: Context, key: str, answer: str) -> list[str]:
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


def _negative_problem(ctx: Context, key: str) -> list[str]:
    """A class asked about with no targets: a negative only for a class the facts list as looked for."""
    if key == DETECTION_KEY and ctx.facts.get("detections") is not None:
        return []
    if ctx.facts.get("labels") and key in labelled_classes(ctx.facts):
        return []
    return [f"{key!r} is neither a labelled class of the facts nor a queried OSM feature: no negative"]


def _check_class_question(ctx: Context, task: str, q: str, a: str) -> list[str]:
    """counting / localization / detection of one class (labelled objects, detections or OSM)."""
    out: list[str] = []
    if OSM_PHRASE_RE.search(q):
        names = [m.group("feat").lower() for m in OSM_NAME_RE.finditer(q)]
        key = canonical_osm(names[0]) if len(set(map(canonical_osm, names))) == 1 else None
        if key is None:
            return [f"the OpenStreetMap question names {'several' if names else 'no'} OSM features"]
        known = osm_facts(ctx.facts).get(key)
        if known is None:
            return [f"OSM feature {key!r} is not in the facts (not queried)"]
        if task == "detection":
            return ["OpenStreetMap features have no boxes in the facts: no detection"]
        count, cells = known.count, list(known.cells)
    else:
        key, problem = _question_key(ctx, q)
        if key is None:
            return [problem or "unknown class"]
        truth = targets_for(ctx.facts, key)
        if not truth:
            out += _negative_problem(ctx, key)
        if task == "detection":
            return out + _check_detection_answer(ctx, key, a)
        count, cells = len(truth), cells_of(truth)
    if task == "counting":
        if not COUNT_ANSWER_RE.match(a):
            out.append(f"counting answer {a!r} is not a bare integer")
        elif int(a) != count:
            out.append(f"counting answer {a} but the facts have {count} {key}(s)")
    else:
        if not LOC_ANSWER_RE.match(a):
            out.append(f"localization answer {a!r} is not 'None' or ascending cells like '1,2,7'")
        else:
            said_cells = [] if a == "None" else [int(c) for c in a.split(",")]
            if said_cells != sorted(set(said_cells)):
                out.append(f"localization answer {a!r} is not strictly ascending")
            if sorted(set(said_cells)) != cells:
                out.append(f"localization answer {a!r} but the {key}(s) are in cells {cells or 'None'}")
    return out


def _check_land_cover_question(ctx: Context, q: str, a: str) -> list[str]:
    """The dominant land-cover class of the chip or of a named cell, from the map the question names."""
    lc = land_cover(ctx.facts)
    if lc is None:
        return ["a land-cover question but the facts have no ext.land_cover"]
    out = []
    if PRODUCT_NAMES[lc["product"]].lower() not in q.lower():
        out.append(f"the question must name the map ({land_cover_product_phrase(lc)})")
    years = set(YEAR_IN_Q_RE.findall(q))
    dr = lc.get("date_range") or []
    map_years = {str(lc["year"])} if lc.get("year") else {d[:4] for d in dr}
    if years and not years <= map_years:
        out.append(
            f"the question names year(s) {sorted(years)} but the map is of {lc.get('year') or ' to '.join(dr)}"
        )
    m = CELL_IN_Q_RE.search(q)
    if m:
        cell = lc["cells"][int(m.group(1)) - 1] if 1 <= int(m.group(1)) <= 9 else None
        if cell is None:
            return [*out, f"cell {m.group(1)} does not exist (cells are 1..9)"]
        truth, where = cell["dominant"], f"cell {cell['cell']}"
    else:
        truth, where = lc["dominant"], "the chip"
    if truth is None or a.strip().lower() != truth.lower():
        out.append(f"answer {a!r} but the dominant land-cover class of {where} is {truth!r}")
    return out


def _check_box_question(ctx: Context, q: str, a: str) -> list[str]:
    m = BOX_RE.search(q)
    if not m:
        return ["classification question names no box [x1, y1, x2, y2]"]
    box = [float(m.group(g)) for g in ("x1", "y1", "x2", "y2")]
    pool = [dict(o, bbox=_frame_box(ctx, o)) for o in ctx.objects]
    pool += [dict(d, label=DETECTION_KEY, bbox=_frame_box(ctx, d)) for d in ctx.detections]
    best = max(pool, key=lambda o: iou(box, o["bbox"]), default=None)
    if best is None or iou(box, best["bbox"]) < IOU_MATCH:
        return [f"no object of the facts at box {m.group(0)}"]
    if not LABEL_ANSWER_RE.match(a):
        return [f"classification answer {a!r} is not a bare label"]
    said = canonical_label(a)
    truth = DETECTION_KEY if best["label"] == DETECTION_KEY else object_class(best)
    if truth == "other":  # a class outside the vocabulary: the source's own label decides
        ok = said == canonical_label(best["label"]) or (
            said != GENERIC_KEY and label_matches(said, best["label"])
        )
    else:
        ok = said == truth
    return [] if ok else [f"answer {a!r} but the object at {best['bbox']} is a {truth!r}"]


def check_one_qa(ctx: Context, item: Mapping[str, Any]) -> list[str]:
    task, q, a = item.get("task"), item.get("question"), item.get("answer")
    if task not in QA_TASKS:
        return [f"unknown task {task!r}"]
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        return ["question and answer must be non-empty strings"]
    out = check_hedges("question", q, []) + check_hedges("answer", a, [])
    if task == "classification" and LAND_COVER_Q_RE.search(q):
        return out + _check_land_cover_question(ctx, q, a)
    if task == "classification" and SCENE_Q_RE.search(q) and not BOX_RE.search(q):
        truth = scene_type(ctx.facts)
        if truth is None or a.strip().lower() != truth.lower():
            out.append(f"answer {a!r} but the facts' scene type is {truth!r}")
        return out
    if task in ("classification", "detection"):
        out += _check_frame(ctx, q)
    if task == "classification":
        return out + _check_box_question(ctx, q, a)
    return out + _check_class_question(ctx, task, q, a)


def qa_problems(ctx: Context, qa: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for i, item in enumerate(qa):
        out += [f"qa[{i}] ({item.get('task')}): {p}" for p in check_one_qa(ctx, item)]
    return out
