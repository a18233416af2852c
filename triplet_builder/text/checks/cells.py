"""Grid cells and positions of a caption field (tied to the topic of their clause), exclusive
references ('only in cell 1') and whole-chip negations ('no open water').
"""

from __future__ import annotations

import re

from triplet_builder.text.checks.context import (
    Context,
    Ref,
    clause_of,
    clause_spans,
)
from triplet_builder.text.checks.patterns import (
    FIELD_TOPIC,
    MOSTLY_RE,
    NEGATION,
    ONLY_RE,
    TOPIC_RES,
    TOTAL_RE,
)
from triplet_builder.text.conventions import (
    BRIGHT_PRESENT,
    GENERIC_KEY,
    GLOBAL_ABSENT,
    MOSTLY,
    NODATA_CELL,
    NODATA_PARTLY,
    WATER_PRESENT,
    canonical_label,
)


def topic_at(
    ctx: Context, field: str, text: str, clause: tuple[int, int], ref: Ref, refs: list[Ref]
) -> tuple[str, str | None, bool, bool] | None:
    """(topic, class key, negated, mostly) of a cell reference, from the keywords of its clause."""
    a, b = clause
    hits: list[tuple[int, int, str, str | None]] = []  # (start, end, topic, key)
    for topic, rx in TOPIC_RES.items():
        for m in rx.finditer(text, a, b):
            hits.append((m.start(), m.end(), topic, None))
    for m in ctx.noun_re.finditer(text, a, b):
        hits.append((m.start(), m.end(), "target", canonical_label(m.group("noun"))))
    hits = [h for h in hits if not (h[0] < ref.end and h[1] > ref.start)]
    if not hits:  # no keyword in the clause: the field's own topic, if it has one
        default = FIELD_TOPIC.get(field)
        if default is None:
            return None
        return default, (GENERIC_KEY if default == "target" else None), False, False
    # Prefer keywords of the same comma-separated part of the clause ("the tanks sit in cells 1, 4
    # and 7, the ships in cells 6 and 9"); commas inside cell references do not separate.
    in_refs = [(r.start, r.end) for r in refs]
    commas = [i for i in range(a, b) if text[i] == "," and not any(s <= i < e for s, e in in_refs)]
    seg_a = max([i for i in commas if i < ref.start], default=a)
    seg_b = min([i for i in commas if i >= ref.end], default=b)
    same = [h for h in hits if seg_a <= h[0] and h[1] <= seg_b]
    prio = FIELD_TOPIC.get(field)
    pool = same or hits
    pool = [h for h in pool if h[2] == prio] or pool

    def dist(h: tuple[int, int, str, str | None]) -> int:
        return ref.start - h[1] if h[1] <= ref.start else h[0] - ref.end

    h = min(pool, key=dist)
    window = text[max(a, h[0] - 40) : h[0]]
    negated = re.search(rf"\b{NEGATION}\b(?:\s+[^\W\d_]+){{0,2}}\s*$", window, re.I) is not None
    between = text[h[1] : ref.start] if h[1] <= ref.start else text[ref.end : h[0]]
    mostly = MOSTLY_RE.search(between) is not None
    return h[2], h[3], negated, mostly


def check_cells(ctx: Context, field: str, text: str, refs: list[Ref]) -> list[str]:
    out = []
    clauses = clause_spans(text)
    exclusive_done: set[tuple[int, int]] = set()
    for ref in refs:
        for n in ref.invalid:
            out.append(f"{field}: cell {n} does not exist (cells are 1..9)")
        if not ref.cells:
            continue
        topic = topic_at(ctx, field, text, clause_of(clauses, ref.start), ref, refs)
        if topic is None:
            continue
        kind, key, negated, mostly = topic
        for c in ref.cells:
            cell = ctx.cells[c]
            w, br, v = cell["water_fraction"], cell["bright_fraction"], cell["valid_fraction"]
            if kind == "water":
                ok = w < WATER_PRESENT if negated else w >= (MOSTLY if mostly else WATER_PRESENT)
            elif kind == "land":
                ok = w > 1.0 - WATER_PRESENT if negated else w < (MOSTLY if mostly else 1.0 - WATER_PRESENT)
            elif kind == "bright":
                ok = br < BRIGHT_PRESENT if negated else br >= BRIGHT_PRESENT
            elif kind == "nodata":
                ok = v < (NODATA_CELL if mostly else NODATA_PARTLY)
            else:
                assert key is not None
                inside = c in ctx.target_cells(key)
                ok = not inside if negated else inside
            if not ok:
                what = f"{'no ' if negated else ''}{'mostly ' if mostly and not negated else ''}{key or kind}"
                if kind in ("water", "land"):
                    fact = f"water fraction {w:.2f}"
                elif kind == "bright":
                    fact = f"bright fraction {br:.2f}"
                elif kind == "nodata":
                    fact = f"valid fraction {v:.2f}"
                else:
                    fact = (
                        f"the {key}(s) are in cells {sorted(ctx.target_cells(key or GENERIC_KEY)) or 'none'}"
                    )
                out.append(f"{field}: cell {c} is said to hold {what} but the facts disagree ({fact})")
        clause = clause_of(clauses, ref.start)
        if clause not in exclusive_done:
            exclusive_done.add(clause)
            out += check_only(ctx, field, text, clause, refs, topic)
    return out


def check_only(
    ctx: Context,
    field: str,
    text: str,
    clause: tuple[int, int],
    refs: list[Ref],
    topic: tuple[str, str | None, bool, bool],
) -> list[str]:
    """An exclusive reference ("water lies only in cell 1") must name every cell that holds it."""
    kind, key, negated, mostly = topic
    a, b = clause
    if negated or kind == "nodata" or not ONLY_RE.search(text, a, b):
        return []
    named = {c for r in refs if a <= r.start < b for c in r.cells}
    if kind == "target":
        holding = ctx.target_cells(key or GENERIC_KEY)
    else:
        holding = set()
        for c, cell in ctx.cells.items():
            w, br = cell["water_fraction"], cell["bright_fraction"]
            if cell["valid_fraction"] >= NODATA_CELL and (
                (kind == "water" and w >= (MOSTLY if mostly else WATER_PRESENT))
                or (kind == "land" and w < (MOSTLY if mostly else 1.0 - WATER_PRESENT))
                or (kind == "bright" and br >= BRIGHT_PRESENT)
            ):
                holding.add(c)
    missing = sorted(holding - named)
    if not missing:
        return []
    return [
        f"{field}: '{text[a:b].strip()}' says only cells {sorted(named)} hold {key or kind} but cells {missing} do too"
    ]


def check_global_negations(ctx: Context, field: str, text: str, refs: list[Ref]) -> list[str]:
    """'no open water' / 'no strong scatterers' about the whole chip (no cell named in the clause)."""
    out = []
    clauses = clause_spans(text)
    for a, b in clauses:
        if any(a <= r.start < b for r in refs):
            continue
        for topic, limit, value in (
            ("water", GLOBAL_ABSENT, ctx.surface["water_fraction"]),
            ("bright", GLOBAL_ABSENT, ctx.surface["bright_fraction"]),
        ):
            for m in TOPIC_RES[topic].finditer(text, a, b):
                window = text[max(a, m.start() - 40) : m.start()]
                neg = re.search(
                    r"\b(?:no|without|free\s+of|lacks?|lacking)\b(?:\s+[^\W\d_]+){0,2}\s*$", window, re.I
                )
                if neg and value >= limit:
                    out.append(
                        f"{field}: '{text[a:b].strip()}' denies {topic} but the facts have {value:.2f}"
                    )
        water = ctx.surface["water_fraction"]
        for m in TOTAL_RE.finditer(text, a, b):
            denied, value = ("water", water) if m.group("land") else ("land", 1.0 - water)
            if value >= GLOBAL_ABSENT:
                out.append(f"{field}: '{m.group(0)}' denies {denied} but the facts have {value:.2f}")
    return out
