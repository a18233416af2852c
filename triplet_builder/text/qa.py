"""Task QA in FUSAR-GPT's formats (counting, localization, detection, classification) written from a
chip's fact sheet alone; used by the offline writer (and, for its plan, by the LLM writer).

Deterministic: the caller passes a `random.Random` seeded per chip id (text/offline.py `seeded_rng`).
Boxes are in the QA frame (the chip image's pixels, schemas/frames.py), which every detection and
classification question names.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from schemas.frames import Frame, box_to_frame, qa_frame
from triplet_builder.text.conventions import (
    DETECTION_KEY,
    canonical_label,
    cells_of,
    label_words,
    plural,
    targets_for,
)

_COUNT_Q = (
    "How many {P} are there in this SAR image?",
    "Count the {P} in this image.",
    "How many {P} does this SAR image contain? Answer with a number.",
    "What is the number of {P} in the image?",
    "Give the number of {P} visible in this SAR image.",
)
_LOC_Q = (
    "The image is divided into a 3 x 3 grid of cells numbered 1 to 9 row by row from the top-left. "
    "Which cells contain {P}?",
    "Split the image into a 3 x 3 grid (cells 1-9, row-major from the top-left). In which cells are "
    "there {P}? List the cell numbers, or None.",
    "Using a 3 x 3 grid numbered 1 to 9 from the top-left, row by row, which cells hold {P}?",
    "Which of the nine grid cells (3 x 3, numbered 1-9 left to right, top to bottom) contain {P}?",
)
_DET_Q = (
    'Detect all {P} in this SAR image. Answer with a JSON list of {{"bbox_2d": [x1, y1, x2, y2], '
    '"label": "{L}"}} in {F}, or None.',
    "Locate the {P} in the image and give their bounding boxes [x1, y1, x2, y2] in {F}, as JSON.",
    'Output the bounding boxes of all {P} as JSON with "bbox_2d" and "label", using {F}.',
    'Where are the {P}? Return [{{"bbox_2d": [x1, y1, x2, y2], "label": "{L}"}}, ...] with {F}, or None '
    "if there are none.",
)
_CLS_Q = (
    "What is the category of the object in the box {B} ({F})?",
    "Classify the object inside the bounding box {B}, given in {F}.",
    "Which class does the object at {B} ({F}) belong to?",
    "Name the type of target enclosed by the box {B} in {F}.",
)


def _sorted_targets(ts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(ts, key=lambda t: (t["bbox"][1], t["bbox"][0], t["bbox"][3], t["bbox"][2]))


def _frame_box(t: dict[str, Any], frame: Frame) -> list[int]:
    """A target's box in the QA frame, from its normalized box (schemas/frames.py)."""
    return box_to_frame(t["bbox_norm"], frame.width, frame.height)


def _qa_set(
    ts: list[dict[str, Any]], noun: str, json_label: str, rng: random.Random, frame: Frame
) -> list[dict[str, str]]:
    """counting, localization and detection QA of one class (ts may be empty: a negative); boxes in
    `frame`, which the detection question names."""
    ts = _sorted_targets(ts)
    nouns = plural(noun)
    cells = cells_of(ts)
    det = [{"bbox_2d": _frame_box(t, frame), "label": t["label"]} for t in ts]
    return [
        {"task": "counting", "question": rng.choice(_COUNT_Q).format(P=nouns), "answer": str(len(ts))},
        {
            "task": "localization",
            "question": rng.choice(_LOC_Q).format(P=nouns),
            "answer": ",".join(map(str, cells)) if cells else "None",
        },
        {
            "task": "detection",
            "question": rng.choice(_DET_Q).format(P=nouns, L=json_label, F=frame.phrase),
            "answer": json.dumps(det) if det else "None",
        },
    ]


def _box_text(box: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


def _keys_of_objects(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(class key, the first label of that key) for the labelled objects, sorted by key."""
    seen: dict[str, str] = {}
    for o in facts.get("objects") or []:
        seen.setdefault(canonical_label(o["label"]), o["label"])
    return sorted(seen.items())


def write_qa(
    facts: dict[str, Any], rng: random.Random, negative_classes: Sequence[str], n_negative: int
) -> list[dict[str, str]]:
    """The task QA of one chip: counting, localization and detection of every labelled class (or of the
    bright point targets when nothing is labelled), a classification of one object per labelled class,
    and the three negatives of `n_negative` absent `negative_classes` (seeded choice)."""
    out: list[dict[str, str]] = []
    frame = qa_frame(facts["chip"]["width_px"], facts["chip"]["height_px"])
    keys = _keys_of_objects(facts)
    if not keys:
        dets = [dict(d, label=DETECTION_KEY) for d in (facts.get("detections") or {}).get("items", [])]
        return _qa_set(dets, DETECTION_KEY, DETECTION_KEY, rng, frame)
    for key, label in keys:
        ts = targets_for(facts, key)
        out += _qa_set(ts, label_words(label), label, rng, frame)
        obj = rng.choice(_sorted_targets(ts))
        out.append(
            {
                "task": "classification",
                "question": rng.choice(_CLS_Q).format(B=_box_text(_frame_box(obj, frame)), F=frame.phrase),
                "answer": obj["label"],
            }
        )
    absent = [c for c in negative_classes if not targets_for(facts, canonical_label(c))]
    for c in rng.sample(absent, min(n_negative, len(absent))):
        out += _qa_set([], label_words(c), c, rng, frame)
    return out


__all__ = ["write_qa"]
