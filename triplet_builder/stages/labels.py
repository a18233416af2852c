"""Labels stage: the labelled objects of the region's label file (`facts.labels`) in each chip's fact sheet.

It runs right after the facts stage, and only when a label file is configured (stages/assemble.py). The
facts stage writes a complete, valid sheet with `objects: []`; this stage replaces `objects` with the
chip's labelled objects (each with its vocabulary `class`, its box and cell) and adds the core `labels`
section (the file, the classes it labels, the chip's count of each, zeros included), then validates the
completed sheet once more. A chip whose scene the file does not label (no row matches it) keeps
`objects: []` and gets no `labels` section: the file states nothing about it, not even a negative.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

import numpy as np
import shapely

from schemas import json_schema, validator
from triplet_builder.config import LabelsConfig
from triplet_builder.facts.label_classes import labels_section
from triplet_builder.facts.labels import LabelSet
from triplet_builder.facts.sheet import with_norm_boxes
from triplet_builder.record import ChipRecord, SceneRef
from triplet_builder.stages.base import BatchStage, StageStats, Stats

SECTION = "labels"


@cache
def _parts_validator() -> Callable[[Any], None]:
    """A validator of the two parts of the sheet this stage writes, against the facts schema's own
    definitions: the facts stage validated the rest, so the completed sheet is valid iff these are (at a
    tenth of the cost of validating the whole sheet again)."""
    schema = copy.deepcopy(json_schema("facts"))  # its $defs and $id, so that its `$ref`s resolve
    schema["properties"] = {k: schema["properties"][k] for k in ("objects", SECTION)}
    schema["required"] = []
    return validator(schema, "fact sheet")


class Labels(BatchStage):
    """Built as `Labels(cfg.facts.labels)`: the config stays under `facts.labels`, where region files have it."""

    name = "labels"
    needs = ("objects",)  # the sheet the facts stage made
    provides = ("objects", SECTION)

    def __init__(self, cfg: LabelsConfig, *, batch: int = 64) -> None:
        self.cfg = cfg
        self.batch = batch
        self._labels: LabelSet | None = None
        self._scenes: set[SceneRef] = set()  # the task's scenes, for the label counts
        self._used: set[int] = set()  # labels placed in at least one of the task's chips
        self._validate = _parts_validator()

    @property
    def label_set(self) -> LabelSet:
        """The label file, read once per task (on the worker, when the first chip arrives)."""
        if self._labels is None:
            self._labels = LabelSet.from_config(self.cfg)
        return self._labels

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        self._scenes, self._used = set(), set()
        for r in super().run(records, stats):
            self._scenes.add(r.scene)
            yield r
        self._count_labels(stats[self.name])

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        labels = self.label_set
        for r in records:
            assert r.facts is not None and r.georef is not None, "the labels stage runs after facts"
            w, h = r.window.out_width, r.window.out_height
            objects = labels.objects_in_chip(
                r.scene,
                r.window,
                shapely.from_wkb(r.georef.footprint_wkb),
                r.georef.pixel_size_m,
                used=self._used,
            )
            r.facts["objects"] = with_norm_boxes(objects, w, h)
            if labels.covers(r.scene):
                r.facts[SECTION] = labels_section(labels.source, labels.classes_labelled, r.facts["objects"])
                st.extra["chips_labelled"] += 1
            else:
                r.facts.pop(SECTION, None)
                st.extra["chips_scene_not_in_file"] += 1
            for o in r.facts["objects"]:
                st.extra[f"objects_{o['class'].replace(' ', '_')}"] += 1
            self._validate(
                {k: r.facts[k] for k in ("objects", SECTION) if k in r.facts}
            )  # the sheet is complete

    def _count_labels(self, st: StageStats) -> None:
        """Per task: labels of the file matched to the task's scene(s) or not, and of the matched those
        placed in one of the task's chips or in none (`stages.labels.extra`; summed over tasks, a label
        counts once per task)."""
        labels = self.label_set
        matched = np.zeros(len(labels), dtype=bool)
        for scene in self._scenes:
            matched |= labels.matches(scene)
        n = int(matched.sum())
        st.extra["labels_matched"] += n
        st.extra["labels_unmatched"] += len(labels) - n
        st.extra["labels_in_chips"] += len(self._used)
        st.extra["labels_outside_chips"] += n - len(self._used)
