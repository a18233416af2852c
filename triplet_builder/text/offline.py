"""The offline text writer: captions (FUSAR-GEOVL fields) and FUSAR-GPT task QA written from a chip's
fact sheet alone, with no model and no network.

Deterministic: every random choice comes from a `random.Random` seeded with SHA-256 of the writer name,
the chip id and the field (never Python's salted `hash()`), so a chip always gets the same text and a
change to one field's templates leaves the others' choices alone. Varied: every field with content has
at least four phrasings, and every task several question phrasings.

Grounded: every number, class, cell and name comes from the fact sheet; percentages follow the dataset
convention of text/consistency.py (nearest 5 %, `format_percent`); roads, land cover and OSM features
only from the annotation sections (`ext.osm`, `ext.land_cover`); functionality only as derived by
facts/functionality.py. The caption fields live in text/captions/. No hedging. `check_text` of text/consistency.py finds no problem in the output
(the tests hold the writer to that).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

from schemas import CAPTION_FIELDS
from schemas.frames import Frame, box_to_frame, qa_frame
from triplet_builder.text.base import TextResult, render_caption, validate_text
from triplet_builder.text.captions import NEAR_PLACE_KM, caption_fields
from triplet_builder.text.captions import keys_of_objects as _keys_of_objects
from triplet_builder.text.consistency import (
    COMMON_CLASSES,
    DETECTION_KEY,
    canonical_label,
    cells_of,
    label_words,
    plural,
    targets_for,
)

WRITER_NAME = "offline/1.0"
PROMPT_VERSION = "offline-templates/1.0"


# == small helpers =================================================================================
def seeded_rng(name: str, chip_id: str, part: str) -> random.Random:
    """A Random seeded from SHA-256 of (writer name, chip id, part): stable across processes."""
    digest = hashlib.sha256(f"{name}|{chip_id}|{part}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# == task QA =======================================================================================
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


# == the writer ====================================================================================
class OfflineWriter:
    """Template writer: deterministic per chip id, grounded only in the fact sheet.

    negative_classes: common classes a negative QA set may ask about when the chip has labelled
    objects but none of that class (answered 0 / None); n_negative of them per chip (seeded choice).
    near_place_km: detections on water within this distance of the named place imply waters used by
    vessels (functionality).
    """

    name: str = WRITER_NAME
    prompt_version: str = PROMPT_VERSION

    def __init__(
        self,
        negative_classes: Sequence[str] = COMMON_CLASSES,
        n_negative: int = 1,
        near_place_km: float = NEAR_PLACE_KM,
    ) -> None:
        if n_negative < 0:
            raise ValueError(f"OfflineWriter: n_negative must be >= 0, got {n_negative}")
        if near_place_km < 0:
            raise ValueError(f"OfflineWriter: near_place_km must be >= 0, got {near_place_km}")
        self.negative_classes = tuple(negative_classes)
        self.n_negative = n_negative
        self.near_place_km = near_place_km

    def _rng(self, chip_id: str, part: str) -> random.Random:
        return seeded_rng(self.name, chip_id, part)

    def caption_fields(self, facts: dict[str, Any], chip_id: str) -> dict[str, str | None]:
        fields = caption_fields(facts, lambda part: self._rng(chip_id, part), self.near_place_km)
        assert tuple(fields) == CAPTION_FIELDS
        return fields

    def qa(self, facts: dict[str, Any], chip_id: str) -> list[dict[str, str]]:
        rng = self._rng(chip_id, "qa")
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
                    "question": rng.choice(_CLS_Q).format(
                        B=_box_text(_frame_box(obj, frame)), F=frame.phrase
                    ),
                    "answer": obj["label"],
                }
            )
        absent = [c for c in self.negative_classes if not targets_for(facts, canonical_label(c))]
        for c in rng.sample(absent, min(self.n_negative, len(absent))):
            out += _qa_set([], label_words(c), c, rng, frame)
        return out

    def write(self, facts: dict[str, Any], chip_id: str) -> TextResult:
        fields = self.caption_fields(facts, chip_id)
        qa = self.qa(facts, chip_id)
        validate_text(fields, qa)
        return TextResult(caption_fields=fields, caption=render_caption(fields), qa=qa)


__all__ = ["PROMPT_VERSION", "WRITER_NAME", "OfflineWriter", "seeded_rng"]
