"""The stage list of a build: the core stages in their order, the region file's `stages:` (plugins)
inserted where each asks, and the whole list checked for order before any work.

    tile -> georeference -> embed -> screen -> facts -> [labels] -> [plugins] -> text -> filter -> write

The built-in `labels` stage (stages/labels.py) is in the list only when the region has a label file
(`facts.labels`, `labels=True` here), right after facts; no plugin may take its name. A plugin goes right after the stage its entry names in `after:` (a core stage or an earlier entry),
by default right before `text`; the writer is always last. A stage needing a fact section that no
earlier stage provides, or adding a section before the facts stage has created the sheet, is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from triplet_builder.facts.sheet import CORE_SECTIONS
from triplet_builder.stages.base import Stage
from triplet_builder.stages.embed import Embed
from triplet_builder.stages.facts import Facts
from triplet_builder.stages.filter import Filter
from triplet_builder.stages.georef import Georeference
from triplet_builder.stages.labels import Labels
from triplet_builder.stages.plugins import load_stage_class
from triplet_builder.stages.screen import Screen
from triplet_builder.stages.text import WriteText
from triplet_builder.stages.tile import ReadChips
from triplet_builder.stages.write import Write

CORE_STAGES: tuple[type[Stage], ...] = (
    ReadChips,
    Georeference,
    Embed,
    Screen,
    Facts,
    WriteText,
    Filter,
    Write,
)
DEFAULT_BEFORE = WriteText.name  # where a plugin without `after:` goes


@dataclass(frozen=True)
class PlannedStage:
    """One place of the list: a stage class, and for a plugin the index of its region-file entry."""

    cls: type[Stage]
    entry: int | None = None

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def where(self) -> str:
        return f"stages[{self.entry}]" if self.entry is not None else f"core stage {self.name!r}"


def assemble(entries: Sequence[Any], *, labels: bool = False) -> list[PlannedStage]:
    """The stage list for a region file's `stages:` entries (objects with `name` and `after`), with the
    labels stage right after facts when `labels` (the region has `facts.labels`); raise ValueError (one
    line, every problem) when a stage cannot be found, placed or ordered."""
    problems: list[str] = []
    planned = [PlannedStage(c) for c in CORE_STAGES]
    if labels:
        planned.insert([p.cls for p in planned].index(Facts) + 1, PlannedStage(Labels))
    for i, e in enumerate(entries):
        try:
            cls = load_stage_class(e.name)
        except ValueError as err:
            problems.append(f"stages[{i}].name: {err}")
            continue
        names = [p.name for p in planned]
        if cls.name == Labels.name:
            problems.append(
                f"stages[{i}].name: {Labels.name!r} is the built-in stage of facts.labels: set facts.labels "
                "to import labels, and give a plugin another name"
            )
            continue
        if cls.name in names:
            problems.append(f"stages[{i}].name: a stage named {cls.name!r} is already in the list: each once")
            continue
        anchor = e.after
        if anchor is None:
            pos = names.index(DEFAULT_BEFORE)
        elif anchor == Write.name:
            problems.append(f"stages[{i}].after: nothing goes after {anchor!r}, the writer is the last stage")
            continue
        elif anchor not in names:
            problems.append(
                f"stages[{i}].after: no stage {anchor!r} before it: name one of {', '.join(names[:-1])}"
            )
            continue
        else:
            pos = names.index(anchor) + 1
            while pos < len(planned) and _after(entries, planned[pos]) == anchor:
                pos += 1  # several plugins after one stage keep the file's order
        planned.insert(pos, PlannedStage(cls, i))
    if not problems:
        problems = check_order(planned)
    if problems:
        raise ValueError("; ".join(problems))
    return planned


def _after(entries: Sequence[Any], p: PlannedStage) -> str | None:
    return None if p.entry is None else entries[p.entry].after  # type: ignore[no-any-return]


def check_order(planned: Sequence[PlannedStage]) -> list[str]:
    """What is out of order: needed fact sections no earlier stage provides, sections added before the
    facts stage (which creates the sheet), a writer that is not last."""
    problems: list[str] = []
    have: set[str] = set()
    seen: set[str] = set()
    for p in planned:
        missing = [s for s in p.cls.needs if s not in have]
        if missing:
            problems.append(
                f"{p.where}: stage {p.name!r} needs fact section(s) {', '.join(missing)} that no earlier "
                "stage provides: place it after the stage that provides them (`after:`)"
            )
        if set(p.cls.provides) - set(CORE_SECTIONS) and Facts.name not in seen:
            problems.append(
                f"{p.where}: stage {p.name!r} adds a fact section, but the sheet exists only after "
                f"{Facts.name!r}: place it after facts"
            )
        have.update(p.cls.provides)
        seen.add(p.name)
    if planned and planned[-1].cls is not Write:
        problems.append("the writer must be the last stage")
    return problems


def stage_names(entries: Sequence[Any] = (), *, labels: bool = False) -> tuple[str, ...]:
    """The names of the assembled list, in order (progress bars and the manifest's per-stage stats)."""
    return tuple(p.name for p in assemble(entries, labels=labels))


def plugin_summary(entries: Sequence[Any], *, labels: bool = False) -> list[dict[str, Any]]:
    """The manifest's `plugins`: each extra stage's name, how the region file names it, where it runs and
    the fact sections it adds (`$.ext.<section>`)."""
    planned = assemble(entries, labels=labels)
    return [
        {
            "stage": p.name,
            "ref": entries[p.entry].name,
            "after": planned[k - 1].name,
            "sections": [s for s in p.cls.provides if s not in CORE_SECTIONS],
        }
        for k, p in enumerate(planned)
        if p.entry is not None
    ]
