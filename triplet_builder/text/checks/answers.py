"""Task QA answers in FUSAR-GPT's formats (counting, localization, detection, classification) against
the fact sheet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from schemas import QA_TASKS
from schemas.frames import box_to_frame, qa_frame, stated_frame
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
from triplet_builder.text.conventions import (
    DETECTION_KEY,
    GENERIC_KEY,
    IOU_MATCH,
    canonical_label,
    cells_of,
    iou,
    label_matches,
    targets_for,
)

# == task QA =======================================================================================
_NO_CLASS = "the question names no known class"


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


def check_one_qa(ctx: Context, item: Mapping[str, Any]) -> list[str]:
    task, q, a = item.get("task"), item.get("question"), item.get("answer")
    if task not in QA_TASKS:
        return [f"unknown task {task!r}"]
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        return ["question and answer must be non-empty strings"]
    out = check_hedges("question", q, []) + check_hedges("answer", a, [])
    if task in ("classification", "detection"):
        out += _check_frame(ctx, q)
    if task == "classification":
        m = BOX_RE.search(q)
        if not m:
            return [*out, "classification question names no box [x1, y1, x2, y2]"]
        box = [float(m.group(g)) for g in ("x1", "y1", "x2", "y2")]
        pool = [dict(o, bbox=_frame_box(ctx, o)) for o in ctx.objects]
        pool += [dict(d, label=DETECTION_KEY, bbox=_frame_box(ctx, d)) for d in ctx.detections]
        best = max(pool, key=lambda o: iou(box, o["bbox"]), default=None)
        if best is None or iou(box, best["bbox"]) < IOU_MATCH:
            return [*out, f"no object of the facts at box {m.group(0)}"]
        if not LABEL_ANSWER_RE.match(a):
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
        if not COUNT_ANSWER_RE.match(a):
            out.append(f"counting answer {a!r} is not a bare integer")
        elif int(a) != len(truth):
            out.append(f"counting answer {a} but the facts have {len(truth)} {key}(s)")
    elif task == "localization":
        true_cells = cells_of(truth)
        if not LOC_ANSWER_RE.match(a):
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


def qa_problems(ctx: Context, qa: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for i, item in enumerate(qa):
        out += [f"qa[{i}] ({item.get('task')}): {p}" for p in check_one_qa(ctx, item)]
    return out
