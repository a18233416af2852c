"""Screen stage: cheap pixel checks right after the chip is read, georeferenced and embedded, BEFORE the
facts and the text, so that no fact sheet is derived and no (paid) LLM request is spent on a chip that is
then rejected. Rejects, with a reason: featureless chips (dB standard deviation below `min_std_db`) and
duplicates (identical pixels to an earlier chip of the task). Mostly-nodata chips are rejected earlier,
by the tile stage; text that contradicts its facts later, by the filter stage (triplet_builder/stages/filter.py).
"""

from __future__ import annotations

import hashlib

import numpy as np

from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage


class Screen(Stage):
    name = "screen"

    def __init__(self, *, min_std_db: float = 0.5, dedupe: bool = True) -> None:
        self.min_std_db = min_std_db
        self.dedupe = dedupe
        self._seen: dict[str, str] = {}  # pixel hash -> first chip id of the task

    def process(self, record: ChipRecord) -> ChipRecord:
        assert record.db is not None and record.valid is not None
        band = record.db[0][record.valid]
        std = float(band.std()) if band.size else 0.0
        if std < self.min_std_db:
            return record.reject(
                self.name, "featureless", f"dB standard deviation {std:.2f} < {self.min_std_db}"
            )
        if self.dedupe:
            q = np.where(record.valid, np.round(np.nan_to_num(record.db, nan=-999.0) * 100), -99999).astype(
                np.int32
            )
            h = hashlib.sha256(q.tobytes()).hexdigest()
            if h in self._seen:
                return record.reject(self.name, "duplicate", f"same pixels as chip {self._seen[h]}")
            self._seen[h] = record.chip_id
        return record
