"""Task QA in FUSAR-GPT's formats written from a chip's fact sheet alone, for every class the facts know
(text/classes.py): counting (a bare integer), 3 x 3 localization (cells or None) and detection
(`bbox_2d` + class label, in the frame the question states, schemas/frames.py) of labelled object
classes, of the CFAR bright point targets (when nothing labelled is present) and of countable OSM
features (counting and localization: OSM gives no boxes); classification of a labelled object's box,
of the dominant land-cover class of the chip and of a named cell (naming the map and its year), and of
the scene type (triplet_builder/facts/functionality.py, when that module exists).

`qa_plan` decides WHAT to ask (deterministic per chip: the caller seeds the Random from the chip id);
the offline writer renders the plan with `write_qa`, the LLM writer sends it as its TASKS. Negatives
(answer 0 / None) only for classes the facts list as looked for (text/classes.py).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.frames import Frame, box_to_frame, qa_frame
from triplet_builder.config import QaConfig
from triplet_builder.text.classes import (
    OSM_COUNTED,
    ClassFacts,
    detection_facts,
    land_cover,
    land_cover_product_phrase,
    object_facts,
    osm_facts,
    scene_type,
)
from triplet_builder.text.conventions import CELL_NAMES, NODATA_CELL, object_class, plural

GRID = "a 3 x 3 grid numbered 1 to 9 row by row from the top-left"

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


_OSM_COUNT_Q = (
    "How many {P} are mapped in OpenStreetMap within the footprint of this SAR image?",
    "According to OpenStreetMap, how many {P} lie in the area of this image?",
    "Count the {P} that OpenStreetMap maps in this image's footprint.",
    "What is the number of {P} mapped in OpenStreetMap in the area this image covers?",
)
_OSM_LOC_Q = (
    "The image is divided into " + GRID + ". Which cells contain {P} mapped in OpenStreetMap?",
    "Using " + GRID + ", in which cells does OpenStreetMap map {P}? List the cell numbers, or None.",
    "Which of the nine grid cells (3 x 3, numbered 1-9 left to right, top to bottom) hold {P} mapped in "
    "OpenStreetMap?",
)
_LC_CHIP_Q = (
    "According to {M}, what is the dominant land-cover class of this image?",
    "According to {M}, which land-cover class covers most of this image?",
    "Which land-cover class dominates this image according to {M}?",
)
_LC_CELL_Q = (
    "According to {M}, what is the dominant land-cover class of cell {C} ({N}) of " + GRID + "?",
    "Using " + GRID + ", which land-cover class dominates cell {C} ({N}) according to {M}?",
    "According to {M}, which land-cover class covers most of grid cell {C} ({N}) of " + GRID + "?",
)
_SCENE_Q = (
    "What type of scene does this SAR image show?",
    "Classify the scene of this SAR image by its function.",
    "What is the functional scene type of this image?",
)


def _sorted_targets(ts: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return sorted(ts, key=lambda t: (t["bbox"][1], t["bbox"][0], t["bbox"][3], t["bbox"][2]))


def _frame_box(t: Mapping[str, Any], frame: Frame) -> list[int]:
    """A target's box in the QA frame, from its normalized box (schemas/frames.py)."""
    return box_to_frame(t["bbox_norm"], frame.width, frame.height)


def _box_text(box: list[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


@dataclass(frozen=True)
class PlanItem:
    """One QA item to write: its task and what it is about. `request` is what the LLM writer sends."""

    task: str
    about: str  # "class" | "object" | "land_cover" | "scene_type"
    cls: ClassFacts | None = None
    target: Mapping[str, Any] | None = None  # classification of an object's box
    cell: int | None = None  # land-cover classification of a cell (None: the chip)

    def request(self, frame: Frame, facts: Mapping[str, Any]) -> dict[str, Any]:
        if self.about == "class":
            assert self.cls is not None
            return {"task": self.task, "class": self.cls.key, "source": self.cls.source}
        if self.about == "object":
            assert self.target is not None
            return {"task": self.task, "box": _frame_box(self.target, frame), "frame": frame.phrase}
        if self.about == "land_cover":
            lc = land_cover(facts)
            assert lc is not None
            return {
                "task": self.task,
                "land_cover_of": self.cell or "image",
                "map": land_cover_product_phrase(lc),
            }
        return {"task": self.task, "scene_type": True}


_CLASS_TASKS = {
    "labels": ("counting", "localization", "detection"),
    "detections": ("counting", "localization", "detection"),
    "osm": ("counting", "localization"),
}


def qa_plan(facts: Mapping[str, Any], rng: random.Random, cfg: QaConfig) -> list[PlanItem]:
    """What to ask about one chip (see the module docstring), at most cfg.max_per_chip items."""
    tasks = set(cfg.tasks)
    objs = object_facts(facts)
    osm = [c for c in osm_facts(facts).values() if c.key in OSM_COUNTED]
    present = [c for c in objs if c.count] + [c for c in osm if c.count]
    if not any(c.count for c in objs):
        det = detection_facts(facts)
        if det is not None:
            present.insert(0, det)
    negatives = [c for c in objs if not c.count and c.negative_ok] + [
        c for c in osm if not c.count and c.negative_ok
    ]
    n_neg = (
        min(len(negatives), math.ceil(cfg.negatives_ratio * max(1, len(present))))
        if cfg.negatives_ratio
        else 0
    )
    chosen = present + rng.sample(negatives, n_neg)
    items: list[PlanItem] = []
    for c in chosen:
        items += [PlanItem(t, "class", cls=c) for t in _CLASS_TASKS[c.source] if t in tasks]
        if c.source == "labels" and c.count and "classification" in tasks:
            items.append(PlanItem("classification", "object", target=rng.choice(_sorted_targets(c.targets))))
    lc = land_cover(facts)
    if lc is not None and "land_cover" in tasks and lc.get("dominant"):
        items.append(PlanItem("classification", "land_cover"))
        cells = [c["cell"] for c in lc["cells"] if c.get("dominant") and c["valid_fraction"] >= NODATA_CELL]
        if cells:
            items.append(PlanItem("classification", "land_cover", cell=rng.choice(cells)))
    if "scene_type" in tasks and scene_type(facts):
        items.append(PlanItem("classification", "scene_type"))
    if len(items) > cfg.max_per_chip:
        keep = sorted(rng.sample(range(len(items)), cfg.max_per_chip))
        items = [items[i] for i in keep]
    return items


def render(item: PlanItem, facts: Mapping[str, Any], rng: random.Random, frame: Frame) -> dict[str, str]:
    """One plan item as a question and its answer from the facts."""
    if item.about == "object":
        t = item.target
        assert t is not None
        q = rng.choice(_CLS_Q).format(B=_box_text(_frame_box(t, frame)), F=frame.phrase)
        return {"task": "classification", "question": q, "answer": object_class(t)}
    if item.about == "land_cover":
        lc = land_cover(facts)
        assert lc is not None
        m = land_cover_product_phrase(lc)
        if item.cell is None:
            return {
                "task": "classification",
                "question": rng.choice(_LC_CHIP_Q).format(M=m),
                "answer": lc["dominant"],
            }
        cell = lc["cells"][item.cell - 1]
        q = rng.choice(_LC_CELL_Q).format(M=m, C=item.cell, N=CELL_NAMES[item.cell])
        return {"task": "classification", "question": q, "answer": cell["dominant"]}
    if item.about == "scene_type":
        return {"task": "classification", "question": rng.choice(_SCENE_Q), "answer": str(scene_type(facts))}
    c = item.cls
    assert c is not None
    nouns = plural(c.key)
    cells = ",".join(map(str, c.cells)) if c.cells else "None"
    if c.source == "osm":
        tpl = _OSM_COUNT_Q if item.task == "counting" else _OSM_LOC_Q
        answer = str(c.count) if item.task == "counting" else cells
        return {"task": item.task, "question": rng.choice(tpl).format(P=nouns), "answer": answer}
    if item.task == "counting":
        return {"task": "counting", "question": rng.choice(_COUNT_Q).format(P=nouns), "answer": str(c.count)}
    if item.task == "localization":
        return {"task": "localization", "question": rng.choice(_LOC_Q).format(P=nouns), "answer": cells}
    det = [{"bbox_2d": _frame_box(t, frame), "label": c.key} for t in _sorted_targets(c.targets)]
    q = rng.choice(_DET_Q).format(P=nouns, L=c.key, F=frame.phrase)
    return {"task": "detection", "question": q, "answer": json.dumps(det) if det else "None"}


def write_qa(
    facts: Mapping[str, Any], rng: random.Random, cfg: QaConfig | None = None
) -> list[dict[str, str]]:
    """The task QA of one chip: the plan of `qa_plan`, rendered."""
    frame = qa_frame(facts["chip"]["width_px"], facts["chip"]["height_px"])
    plan = qa_plan(facts, rng, cfg or QaConfig())
    return [render(item, facts, rng, frame) for item in plan]


__all__ = ["PlanItem", "qa_plan", "render", "scene_type", "write_qa"]
