"""Filter stage: reject (with a reason, never silently) featureless chips, text inconsistent with the
fact sheet, and duplicate chips (identical pixels) within a task."""

from __future__ import annotations

import hashlib

import numpy as np

from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage
from triplet_builder.text.consistency import COMMON_CLASSES, check_text


class Filter(Stage):
    name = "filter"

    def __init__(
        self, *, min_std_db: float = 0.5, dedupe: bool = True, classes: tuple[str, ...] = COMMON_CLASSES
    ) -> None:
        self.min_std_db = min_std_db
        self.classes = classes
        self.dedupe = dedupe
        self._seen: dict[str, str] = {}

    def process(self, record: ChipRecord) -> ChipRecord:
        assert record.db is not None and record.valid is not None and record.facts is not None
        band = record.db[0][record.valid]
        std = float(band.std()) if band.size else 0.0
        if std < self.min_std_db:
            return record.reject(
                self.name, "featureless", f"dB standard deviation {std:.2f} < {self.min_std_db}"
            )
        problems = check_text(record.facts, record.caption_fields or {}, record.qa, self.classes)
        if problems:
            return record.reject(self.name, "inconsistent_text", "; ".join(problems[:5]))
        if self.dedupe:
            q = np.where(record.valid, np.round(np.nan_to_num(record.db, nan=-999.0) * 100), -99999).astype(
                np.int32
            )
            h = hashlib.sha256(q.tobytes()).hexdigest()
            if h in self._seen:
                return record.reject(self.name, "duplicate", f"same pixels as chip {self._seen[h]}")
            self._seen[h] = record.chip_id
        return record
