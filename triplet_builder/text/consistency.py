"""Text-vs-facts consistency checker: does a caption / task QA say only what the fact sheet says?

`check_text(facts, fields, qa)` returns a list of problems (empty = consistent). It parses FREE TEXT
(verbose regexes with named groups), never the offline writer's exact phrasing, so the LLM writer can
be held to the same rules. What it catches:

- hedges and refusals (`HEDGE_WORDS`, `REFUSAL_PATTERNS`);
- percentages: every "N %" (also "less than N %", "N-M %", "between N and M %") must match a fraction
  of the fact sheet under the rounding convention of the dataset (nearest 5 %, see `format_percent`):
  a plain value passes when it is within half a step (2.5 points) of the fact. Which fractions: those
  of the surface types its clause names (water, land, strong scatterers, no-data; of the whole chip and
  of the cells the clause names), limited to what the field may talk about (water: water / land /
  no-data, buildings: strong scatterers, targets: none); a clause naming no surface type may state
  any fraction the field may talk about;
- counts of targets (digits or number words up to twenty, "no", "a single", "both") followed by a
  target noun ("5 labelled ships", "two bright point targets", "no vessels"); a count followed by
  "in cell(s) ..." is compared with the targets of those cells only;
- grid cells: "cell 3", "cells 1, 2 and 7", "cells 5-9", "top-left" ... are tied to the topic of their
  clause (water, land, strong scatterers, no-data, a target class, with negation and "mostly") and must
  agree with the per-cell facts; numbers outside 1..9 are errors;
- place names and countries (capitalised words that are neither in the fact sheet nor common SAR
  vocabulary), the compass direction "N km north-east of <place>", lengths / distances (m, km), dB
  values and coordinates (degrees), dates, months, years, seasons, orbit direction, polarisations and
  sensor names;
- a land/water boundary claimed where the facts have none, and terms no fact supports
  (`UNGROUNDED_TERMS`: rivers, lakes, ...);
- land cover (checks/land_cover.py): the map named (product, year / date range) and each class named
  must be the facts' (`ext.land_cover` fractions of the chip, or of the cells it is tied to); "mostly" /
  "dominates" / "leading class per cell" must be `dominant`; a class's percentage its fraction (5 %
  rounding); "permanent water bodies" is a land-cover class, not open water;
- OpenStreetMap (checks/osm.py): each feature named in an OSM clause (or the `roads` field) mapped in
  `ext.osm.features`, its count, length (m / km, the writer's rounding), share and cells; "no X" / "not
  mapped" only for features queried and absent; `roads` non-null only when ext.osm knows roads,
  railways or bridges;
- functions (port, urban area ..., facts/functionality.py `check_functionality`) named in any field
  must be derived; any object class or OSM feature named must be in the facts, denied only when
  labelled / queried (checks/names.py);
- task QA (FUSAR-GPT formats): counting = a bare integer equal to the true count of the asked class;
  localization = ascending comma-separated cells 1..9 or "None", equal to the true cells; detection =
  "None" or a JSON list of {"bbox_2d": [x1, y1, x2, y2], "label": str}, one box per true object
  (IoU >= 0.99, same labels, same number); classification = the label of the object at the box the
  question names. Boxes are in the QA frame (the chip image's pixels, schemas/frames.py), which every
  detection and classification question must state ("pixel coordinates of the 64 x 64 image"). A question about a class the checker does not know (not labelled in the facts, not
  a synonym, not in `classes`) passes only with a negative answer (0 / None).

The conventions shared with the writers (percent rounding, cell names, thresholds, the
meaning of a target class) live in text/conventions.py and are re-exported here; the checks themselves
live in text/checks/, one job per module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from schemas import CAPTION_FIELDS
from triplet_builder.text.checks.acquisition import (
    check_acquisition,
    check_claims,
    check_hedges,
    check_names,
    find_dates,
)
from triplet_builder.text.checks.answers import qa_problems
from triplet_builder.text.checks.cells import check_cells, check_global_negations
from triplet_builder.text.checks.context import (
    Context,
    cell_refs,
    mask_spans,
)
from triplet_builder.text.checks.land_cover import check_land_cover, check_products
from triplet_builder.text.checks.names import check_vocabulary
from triplet_builder.text.checks.numbers import check_counts, check_measures, check_percentages, check_sizes
from triplet_builder.text.checks.osm import check_osm, roads_supported
from triplet_builder.text.conventions import (
    BRIGHT_PRESENT,
    CELL_NAMES,
    COMMON_CLASSES,
    DETECTION_KEY,
    GENERIC_KEY,
    GLOBAL_ABSENT,
    HEDGE_WORDS,
    IOU_MATCH,
    MOSTLY,
    NODATA_CELL,
    NODATA_PARTLY,
    NUMBER_WORDS,
    PERCENT_STEP,
    PERCENT_TOLERANCE,
    REFUSAL_PATTERNS,
    SYNONYMS,
    UNGROUNDED_TERMS,
    WATER_PRESENT,
    canonical_label,
    cells_of,
    format_percent,
    has_boundary,
    iou,
    label_matches,
    label_words,
    plural,
    round_percent,
    singular,
    targets_for,
    water_cells,
)


def check_caption(
    facts: Mapping[str, Any],
    fields: Mapping[str, str | None],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Problems of the caption fields (see the module docstring)."""
    return _caption_problems(Context(facts, classes), fields)


def _caption_problems(ctx: Context, fields: Mapping[str, str | None]) -> list[str]:
    facts = ctx.facts
    facts_date = date.fromisoformat(facts["acquisition"]["date"])
    out: list[str] = []
    for name in fields:
        if name not in CAPTION_FIELDS:
            out.append(f"{name}: not a caption field")
    if fields.get("roads") and not roads_supported(facts):
        out.append("roads: the facts name no roads, so the field must be null")
    for name in CAPTION_FIELDS:
        text = fields.get(name)
        if text:
            out += _field_problems(ctx, name, text, facts_date)
    return out


def _field_problems(ctx: Context, name: str, text: str, facts_date: date) -> list[str]:
    """One caption field. Order matters: the land-cover map and classes, then OSM, are judged first and
    masked, so their words and numbers ("permanent water bodies", "ESA WorldCover 2021", "2.4 km of
    roads") are not read again as surface, date or target claims."""
    out, product_spans = check_products(ctx, name, text)
    date_spans, problems = find_dates(mask_spans(text, product_spans), facts_date)
    out += [f"{name}: {p}" for p in problems]
    out += check_hedges(name, text, date_spans)
    plain = mask_spans(text, date_spans + product_spans)
    lc_problems, lc_spans = check_land_cover(ctx, name, plain, text)
    plain = mask_spans(plain, lc_spans)
    osm_problems, osm_numbers, osm_names = check_osm(ctx, name, plain)
    out += lc_problems + osm_problems
    plain = mask_spans(plain, osm_numbers + osm_names)
    count_starts = {m.start("count") for m in ctx.count_re.finditer(plain)}
    refs = cell_refs(plain, count_starts)
    out += check_percentages(ctx, name, plain, refs)
    out += check_measures(ctx, name, plain)
    out += check_sizes(ctx, name, plain)
    out += check_counts(ctx, name, plain, refs)
    out += check_cells(ctx, name, plain, refs)
    out += check_global_negations(ctx, name, plain, refs)
    out += check_names(ctx, name, text)
    out += check_acquisition(ctx, name, text)
    out += check_claims(ctx, name, plain)
    out += check_vocabulary(ctx, name, plain)
    return out


def check_qa(
    facts: Mapping[str, Any],
    qa: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Problems of the task QA (see the module docstring)."""
    return qa_problems(Context(facts, classes), qa)


def check_text(
    facts: dict[str, Any],
    fields: Mapping[str, str | None],
    qa: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = COMMON_CLASSES,
) -> list[str]:
    """Every problem of a caption (field by field) and its task QA against the fact sheet; empty when
    the text is consistent. `classes`: extra class names questions may ask about (negatives)."""
    ctx = Context(facts, classes)
    return _caption_problems(ctx, fields) + qa_problems(ctx, qa)


__all__ = [
    "BRIGHT_PRESENT",
    "CELL_NAMES",
    "COMMON_CLASSES",
    "DETECTION_KEY",
    "GENERIC_KEY",
    "GLOBAL_ABSENT",
    "HEDGE_WORDS",
    "IOU_MATCH",
    "MOSTLY",
    "NODATA_CELL",
    "NODATA_PARTLY",
    "NUMBER_WORDS",
    "PERCENT_STEP",
    "PERCENT_TOLERANCE",
    "REFUSAL_PATTERNS",
    "SYNONYMS",
    "UNGROUNDED_TERMS",
    "WATER_PRESENT",
    "canonical_label",
    "cells_of",
    "check_caption",
    "check_qa",
    "check_text",
    "format_percent",
    "has_boundary",
    "iou",
    "label_matches",
    "label_words",
    "plural",
    "round_percent",
    "singular",
    "targets_for",
    "water_cells",
]
