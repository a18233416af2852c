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
import random
from typing import Any

from schemas import CAPTION_FIELDS
from triplet_builder.config import QaConfig
from triplet_builder.text.base import TextResult, render_caption, validate_text
from triplet_builder.text.captions import NEAR_PLACE_KM, caption_fields
from triplet_builder.text.qa import write_qa

WRITER_NAME = "offline/1.0"
PROMPT_VERSION = "offline-templates/1.0"


# == small helpers =================================================================================
def seeded_rng(name: str, chip_id: str, part: str) -> random.Random:
    """A Random seeded from SHA-256 of (writer name, chip id, part): stable across processes."""
    digest = hashlib.sha256(f"{name}|{chip_id}|{part}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# == the writer ====================================================================================
class OfflineWriter:
    """Template writer: deterministic per chip id, grounded only in the fact sheet.

    qa: which task QA to write and how many negatives (config.QaConfig; text/qa.py).
    near_place_km: detections on water within this distance of the named place imply waters used by
    vessels (functionality).
    """

    name: str = WRITER_NAME
    prompt_version: str = PROMPT_VERSION

    def __init__(self, qa: QaConfig | None = None, near_place_km: float = NEAR_PLACE_KM) -> None:
        if near_place_km < 0:
            raise ValueError(f"OfflineWriter: near_place_km must be >= 0, got {near_place_km}")
        self.qa_cfg = qa or QaConfig()
        self.near_place_km = near_place_km

    def _rng(self, chip_id: str, part: str) -> random.Random:
        return seeded_rng(self.name, chip_id, part)

    def caption_fields(self, facts: dict[str, Any], chip_id: str) -> dict[str, str | None]:
        fields = caption_fields(facts, lambda part: self._rng(chip_id, part), self.near_place_km)
        assert tuple(fields) == CAPTION_FIELDS
        return fields

    def qa(self, facts: dict[str, Any], chip_id: str) -> list[dict[str, str]]:
        return write_qa(facts, self._rng(chip_id, "qa"), self.qa_cfg)

    def write(self, facts: dict[str, Any], chip_id: str) -> TextResult:
        fields = self.caption_fields(facts, chip_id)
        qa = self.qa(facts, chip_id)
        validate_text(fields, qa)
        return TextResult(caption_fields=fields, caption=render_caption(fields), qa=qa)


__all__ = ["PROMPT_VERSION", "WRITER_NAME", "OfflineWriter", "seeded_rng"]
