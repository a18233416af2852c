"""The base of annotation stages (plugins): a batch stage that adds ONE namespaced section to each chip's
fact sheet, `facts["ext"][<stage name>]`, validated against the JSON schema the stage ships.

A subclass declares `name` (its section's name too), `config_model` (a pydantic model of its region-file
`config:`, validated when the region file loads), `facts_schema` (the JSON schema of its section) and
`needs` (fact sections an earlier stage must provide), and implements `annotate(record) -> dict` (or
`process_batch`, calling `add_section`, to batch remote queries). It runs after the facts stage (the
sheet exists from there on); by default right before the text stage. See docs/adding-a-stage.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import validator
from triplet_builder.facts.sheet import EXT_KEY, json_safe
from triplet_builder.record import ChipRecord
from triplet_builder.stages.base import BatchStage, StageStats

if TYPE_CHECKING:
    from triplet_builder.config import RegionConfig


class NoConfig(BaseModel):
    """The config of a stage that takes none: `config:` must be empty or absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AnnotationStage(BatchStage):
    """Adds `facts["ext"][name]` to every kept chip. Built as `cls(config, region)` on each worker."""

    config_model: ClassVar[type[BaseModel]] = NoConfig
    facts_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.provides = (cls.name,)  # a stage writes its own section, named after it, and no other

    def __init__(self, config: BaseModel, region: RegionConfig) -> None:
        self.config = config
        self.region = region
        self._validate = validator(self.facts_schema, "fact sheet")

    def annotate(self, record: ChipRecord) -> dict[str, Any]:  # pragma: no cover - abstract
        """The section of one chip (its georef, pixels and fact sheet are there)."""
        raise NotImplementedError

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        for r in records:
            self.add_section(r, self.annotate(r))

    def add_section(self, record: ChipRecord, section: dict[str, Any]) -> None:
        """Validate `section` against `facts_schema` and put it at `facts["ext"][name]`; a section that does
        not match its schema is an error naming the path (e.g. `$.ext.landcover_fractions.dominant`)."""
        if record.facts is None:
            raise ValueError(f"stage {self.name!r} ran before the facts stage: place it after facts")
        section = json_safe(section)
        try:
            self._validate(section)
        except ValueError as e:
            raise ValueError(
                str(e).replace("fact sheet invalid at $", f"fact sheet invalid at $.{EXT_KEY}.{self.name}", 1)
            ) from None
        record.facts.setdefault(EXT_KEY, {})[self.name] = section
