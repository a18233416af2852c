"""Text stage: a caption (FUSAR-GEOVL fields) and task QA (FUSAR-GPT formats) from the fact sheet
alone, by the configured writer. Writers share one interface (triplet_builder.text.base.TextWriter)."""

from __future__ import annotations

from triplet_builder.config import TextConfig
from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage
from triplet_builder.text.base import TextWriter


def make_writer(cfg: TextConfig) -> TextWriter:
    if cfg.writer == "offline":
        from triplet_builder.text.offline import OfflineWriter

        return OfflineWriter(negative_classes=tuple(cfg.negative_classes))
    raise ValueError(f"text.writer {cfg.writer!r} is not supported; use 'offline'")


class WriteText(Stage):
    name = "text"

    def __init__(self, cfg: TextConfig) -> None:
        self.writer = make_writer(cfg)

    def process(self, record: ChipRecord) -> ChipRecord:
        assert record.facts is not None
        res = self.writer.write(record.facts, record.chip_id)
        record.caption_fields = res.caption_fields
        record.caption = res.caption
        record.qa = res.qa
        record.text_generator = self.writer.name
        record.prompt_version = self.writer.prompt_version
        return record
