"""Hand-written replies of the loopback OpenAI-compatible server for the fact sheets of
tests/triplet_builder/text/factsheets.py, written by reading each sheet (NOT produced by the offline
writer or the checker's helpers): a good caption, a wrong caption the checker must reject, and the
QA answers of every class the writer may ask about. A sheet is recognised by its place and date, so a
test may move a sheet's centre (distinct requests) and still get these replies.

Boxes are [x1, y1, x2, y2] chip pixels, listed top to bottom; cells 1..9 row by row from the top-left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ClassAnswers:
    """What a sheet says about one class: how many, in which cells, which boxes (label per box)."""

    count: int = 0
    cells: str = "None"
    boxes: tuple[tuple[tuple[int, int, int, int], str], ...] = ()


@dataclass(frozen=True)
class SheetReplies:
    caption: dict[str, str | None]
    wrong_caption: dict[str, str | None]  # an under- or over-count in `targets`
    # names a land-cover class / OSM feature the facts do not hold (action "wrong_class")
    wrong_class_caption: dict[str, str | None] | None = None
    classes: dict[str, ClassAnswers] = field(default_factory=dict)  # other classes: 0 / None
    scene_type: str | None = None  # the answer to a scene-type question (functionality rules)


def _caption(**fields: str | None) -> dict[str, str | None]:
    names = ("terrain", "functionality", "distribution", "layout", "boundary", "buildings", "roads", "water")
    return {**{n: None for n in names}, "targets": None, **fields}


_PORT_SHIPS = ClassAnswers(
    5,
    "1,2,4,5",
    (
        ((20, 30, 34, 36), "ship"),
        ((150, 40, 168, 48), "ship"),
        ((60, 70, 72, 76), "ship"),
        ((30, 150, 44, 157), "ship"),
        ((180, 200, 193, 207), "ship"),
    ),
)

REPLIES: dict[tuple[str, str], SheetReplies] = {
    ("Den Helder", "2024-01-23"): SheetReplies(
        caption=_caption(
            terrain="Open water 18.4 km north-west of Den Helder, Netherlands, imaged by Sentinel-1A on "
            "23 January 2024 from a descending orbit in VV and VH.",
            water="Open water covers more than 95 % of the valid pixels.",
            targets="Two bright point targets lie on the water, in cells 4 and 8, measuring about 92 m "
            "and 103 m.",
        ),
        wrong_caption=_caption(targets="One bright point target lies on the water."),
        scene_type="open water",  # water fraction 0.97 >= 0.8, no land use mapped
        classes={
            "bright point target": ClassAnswers(
                2,
                "4,8",
                (((40, 120, 46, 127), "bright point target"), ((130, 200, 139, 205), "bright point target")),
            )
        },
    ),
    ("Vlissingen", "2023-05-14"): SheetReplies(
        caption=_caption(
            terrain="The chip lies 2.3 km east of Vlissingen in the Netherlands; Sentinel-1A imaged it on "
            "14 May 2023 from an ascending orbit in VV and VH.",
            layout="Cells 1, 2 and 4 are mostly water; cells 6, 7, 8 and 9 are mostly land.",
            boundary="A shoreline crosses the chip.",
            buildings="Strong scatterers cover about 20 % of the chip, mainly in cells 5 and 6.",
            water="Water covers about 35 % of the valid pixels.",
            targets="Five ships are labelled, in cells 1, 2, 4 and 5.",
        ),
        wrong_caption=_caption(targets="No ships are visible in the chip."),
        classes={"ship": _PORT_SHIPS},
    ),
    ("Tomelloso", "2021-07-14"): SheetReplies(
        caption=_caption(
            terrain="Dry land 7.9 km south-west of Tomelloso, Spain, imaged by Sentinel-1B on 14 July 2021 "
            "in summer.",
            distribution="Cell 9 lies largely outside the scene.",
            water="There is no open water.",
            targets="No bright point targets stand out.",
        ),
        wrong_caption=_caption(targets="Three bright point targets stand out."),
        # the chip's land cover (when the sheet has one) is crops and bare ground: no mangroves, no railway
        wrong_class_caption=_caption(
            terrain="Dry land 7.9 km south-west of Tomelloso, Spain, imaged by Sentinel-1B on 14 July 2021; "
            "mangroves cover about 30 % of it.",
            roads="A railway crosses the chip.",
            targets="No bright point targets stand out.",
        ),
    ),
    ("Fujairah", "2022-10-03"): SheetReplies(
        caption=_caption(
            terrain="The chip lies 4.6 km north-east of Fujairah, United Arab Emirates; Sentinel-1A imaged "
            "it on 3 October 2022 in VV.",
            layout="Cells 3, 6 and 9 are mostly water; cells 1, 4 and 7 are mostly land.",
            boundary="A shoreline runs through the chip.",
            buildings="Strong scatterers cover about 10 % of the chip, mostly in cells 1, 4 and 7.",
            water="Water covers about 50 % of the chip.",
            targets="Three ships lie in cells 6 and 9, and four storage tanks in cells 1, 4 and 7.",
        ),
        wrong_caption=_caption(targets="Three ships and two storage tanks are labelled."),
        classes={
            "ship": ClassAnswers(
                3,
                "6,9",
                (
                    ((300, 120, 330, 128), "ship"),
                    ((320, 230, 345, 236), "ship"),
                    ((350, 260, 362, 265), "ship"),
                ),
            ),
            "storage tank": ClassAnswers(
                4,
                "1,4,7",
                (
                    ((40, 30, 52, 42), "storage_tank"),
                    ((30, 120, 44, 134), "storage_tank"),
                    ((60, 125, 74, 139), "storage_tank"),
                    ((45, 220, 57, 232), "storage_tank"),
                ),
            ),
        },
    ),
}


def replies_for(facts: dict[str, Any]) -> SheetReplies | None:
    """The hand-written replies of a known sheet, or None."""
    place = facts.get("place") or {}
    return REPLIES.get((place.get("name", ""), facts["acquisition"]["date"]))


def _frame(facts: dict[str, Any]) -> str:
    return f"pixel coordinates of the {facts['chip']['width_px']} x {facts['chip']['height_px']} image"


def _plural(cls: str) -> str:
    return cls if cls.endswith("s") else cls + "s"


def answer(
    facts: dict[str, Any], replies: SheetReplies, item: dict[str, Any], *, wrong: bool = False
) -> dict[str, str]:
    """One QA item from the table; `wrong` under-counts a counting answer by one (or says 1 for 0)."""
    task = item["task"]
    if item.get("scene_type"):
        return {
            "task": task,
            "question": "What type of scene does this SAR image show?",
            "answer": str(replies.scene_type),
        }
    if task == "classification":
        box = tuple(item["box"])
        label = next(lab for a in replies.classes.values() for b, lab in a.boxes if b == box)
        question = f"What is the category of the object in the box {list(box)} ({_frame(facts)})?"
        return {"task": task, "question": question, "answer": label}
    cls = item["class"]
    a = replies.classes.get(cls, ClassAnswers())
    if task == "counting":
        n = (a.count - 1 if a.count else 1) if wrong else a.count
        return {"task": task, "question": f"How many {_plural(cls)} are in this SAR image?", "answer": str(n)}
    if task == "localization":
        question = (
            "The image is divided into a 3 x 3 grid of cells numbered 1 to 9 row by row from the "
            f"top-left. Which cells contain {_plural(cls)}?"
        )
        return {"task": task, "question": question, "answer": a.cells}
    boxes = [{"bbox_2d": list(b), "label": lab} for b, lab in a.boxes]
    question = f"Detect all {_plural(cls)} in this SAR image and give their boxes as JSON in {_frame(facts)}."
    return {"task": task, "question": question, "answer": json.dumps(boxes) if boxes else "None"}
