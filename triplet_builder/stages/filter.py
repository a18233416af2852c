"""Filter stage: reject (with a reason, never silently) chips whose text is inconsistent with their fact
sheet. It runs after the text stage; the cheap pixel checks (featureless, duplicate) run before the facts
and the text, in the screen stage (triplet_builder/stages/screen.py)."""

from __future__ import annotations

from triplet_builder.facts.sheet import CORE_SECTIONS
from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage
from triplet_builder.text.consistency import COMMON_CLASSES, check_text


class Filter(Stage):
    name = "filter"
    needs = CORE_SECTIONS

    def __init__(self, *, classes: tuple[str, ...] = COMMON_CLASSES) -> None:
        self.classes = classes

    def process(self, record: ChipRecord) -> ChipRecord:
        assert record.facts is not None
        problems = check_text(record.facts, record.caption_fields or {}, record.qa, self.classes)
        if problems:
            return record.reject(self.name, "inconsistent_text", "; ".join(problems[:5]))
        return record
