"""Text stage: a caption (FUSAR-GEOVL fields) and task QA (FUSAR-GPT formats) from the fact sheet
alone, by the configured writer. Writers share one interface (triplet_builder.text.base.TextWriter).

The offline writer runs record by record. The LLM writer is remote and slow per request, so its
records are kept in flight in a sliding window (up to `WINDOW_PER_SLOT` chips per allowed concurrent
request) and yielded in input order; a chip the LLM cannot write consistently is rejected with its
reason, and the writer's counters (requests, retries, cache hits, tokens) go to the stage's
`Stats.extra` (prefixed `llm_`), hence to the manifest.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from triplet_builder.config import TextConfig
from triplet_builder.facts.sheet import CORE_SECTIONS
from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import Stage, StageStats, Stats
from triplet_builder.text.base import TextResult, TextWriter

if TYPE_CHECKING:
    from schemas.codec import Stretch
    from triplet_builder.text.llm import LlmWriter, Pending

WINDOW_PER_SLOT = 4  # chips kept in flight per max_concurrent slot (two requests each) to keep it busy


def make_writer(cfg: TextConfig, cache_dir: Path | None = None) -> TextWriter:
    """The writer of `cfg.writer`. cache_dir: the LLM request cache (default: $TRIPLET_BUILDER_CACHE or
    ~/.cache/triplet-builder, + /llm; pass RegionConfig.cache_root() / "llm")."""
    if cfg.writer == "offline":
        from triplet_builder.text.offline import OfflineWriter

        return OfflineWriter(qa=cfg.qa)
    if cfg.writer == "llm":
        from triplet_builder.text.llm import LlmWriter

        assert cfg.llm is not None  # TextConfig enforces it
        return LlmWriter(
            cfg.llm,
            cache_dir=cache_dir,
            qa=cfg.qa,
            prompt_file=cfg.llm.prompt,
        )
    raise ValueError(f"text.writer {cfg.writer!r} is not supported; use 'offline' or 'llm'")


class WriteText(Stage):
    name = "text"
    needs = CORE_SECTIONS

    def __init__(
        self, cfg: TextConfig, *, cache_dir: Path | None = None, stretch: Stretch | None = None
    ) -> None:
        self.writer = make_writer(cfg, cache_dir)
        self.stretch = stretch  # how the chip PNG is encoded for vision models (default: fixed stretch)

    def _apply(self, record: ChipRecord, res: TextResult) -> ChipRecord:
        record.caption_fields = res.caption_fields
        record.caption = res.caption
        record.qa = res.qa
        record.text_generator = self.writer.name
        record.prompt_version = self.writer.prompt_version
        return record

    def process(self, record: ChipRecord) -> ChipRecord:
        assert record.facts is not None
        return self._apply(record, self.writer.write(record.facts, record.chip_id))

    def run(self, records: Iterable[ChipRecord], stats: Stats) -> Iterator[ChipRecord]:
        from triplet_builder.text.llm import LlmWriter

        if isinstance(self.writer, LlmWriter):
            yield from self._run_llm(self.writer, records, stats[self.name])
        else:
            yield from super().run(records, stats)

    # -- the LLM path --------------------------------------------------------------------------
    def _png(self, record: ChipRecord) -> bytes | None:
        """The chip as the PNG of the rows, for vision models only."""
        from triplet_builder.text.llm import LlmWriter

        if not (isinstance(self.writer, LlmWriter) and self.writer.cfg.vision) or record.db is None:
            return None
        from schemas.codec import Stretch

        return record.encoded(self.stretch or Stretch()).png  # the writer reuses this encoding

    def _run_llm(
        self, writer: LlmWriter, records: Iterable[ChipRecord], st: StageStats
    ) -> Iterator[ChipRecord]:
        window = WINDOW_PER_SLOT * writer.cfg.max_concurrent
        pending: deque[tuple[ChipRecord, Pending | None]] = deque()
        try:
            for record in records:
                if record.rejected:
                    pending.append((record, None))
                else:
                    assert record.facts is not None
                    t0 = time.perf_counter()
                    pending.append((record, writer.submit(record.facts, record.chip_id, self._png(record))))
                    st.seconds += time.perf_counter() - t0
                # yield what is done at the head; block only when the window is full
                while pending and (len(pending) > window or _done(pending[0][1])):
                    yield self._finish(writer, *pending.popleft(), st)
            while pending:
                yield self._finish(writer, *pending.popleft(), st)
        finally:
            for k, v in writer.take_counters().items():
                st.extra[f"llm_{k}"] += v

    def _finish(
        self, writer: LlmWriter, record: ChipRecord, job: Pending | None, st: StageStats
    ) -> ChipRecord:
        from triplet_builder.text.llm import TextRejected

        if job is None:
            return record  # rejected upstream: passes through, counted there
        t0 = time.perf_counter()
        try:
            self._apply(record, writer.result(job))
        except TextRejected as e:
            record.reject(self.name, e.reason, e.detail)
        st.seconds += time.perf_counter() - t0
        self.account(st, record)
        for k, v in writer.take_counters().items():
            st.extra[f"llm_{k}"] += v
        return record

    def close(self) -> None:
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()


def _done(job: Pending | None) -> bool:
    return job is None or (job.caption.done() and job.qa.done())
