"""Land cover in a caption field, against `ext.land_cover` (schemas/facts_ext/land_cover.schema.json):
the map named (product, version, year or date range), the classes named (each must be among the map's
fractions: of the chip, or of the cells it is tied to), dominance ("mostly", "dominates", "the leading
class per cell" must be the `dominant` class of the chip / of each cell named) and the percentages
stated for a class (the dataset's 5 % rounding).

Each check returns its problems and the spans it has judged, which the caller masks before the surface
checks: "permanent water bodies" is a land-cover class, not a claim of open water; "built-up" is not
the strong scatterers of the buildings field; the year of "ESA WorldCover 2021" is not the acquisition's.
A land-cover class is never stated absent (the map's legend is not a list of what was looked for).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from triplet_builder.text.checks.context import Context, Ref, cell_refs, clause_spans
from triplet_builder.text.checks.numbers import percent_ok
from triplet_builder.text.checks.patterns import PERCENT_RE
from triplet_builder.text.checks.vocab import (
    AMBIGUOUS_LAND_COVER,
    LAND_COVER_CONTEXT_RE,
    Mention,
    in_sentences,
    mentions,
    nearest,
    negated,
    owner_before_paren,
    sentence_spans,
)
from triplet_builder.text.classes import PRODUCT_NAMES, land_cover, land_cover_product_phrase

Span = tuple[int, int]
PRODUCT_RE = re.compile(
    r"""(?:\b(?P<pre>(?:19|20)\d\d)\s+)?\b(?P<name>(?:ESA\s+)?WorldCover|Dynamic\s+World)\b
    (?:\s+(?P<ver>v\d{3})\b)?
    (?:\s*\(?\s*(?P<year>(?:19|20)\d\d)(?![-\d])(?:\s*\))?)?
    (?:\s*\(\s*(?P<d1>\d{4}-\d{2}-\d{2})\s*(?:to|-|–|until)\s*(?P<d2>\d{4}-\d{2}-\d{2})\s*\))?""",
    re.X | re.I,
)
DOMINANT_RE = re.compile(
    r"\b(?:dominant|dominat\w*|lead(?:s|ing)?|led\s+by|chiefly|mostly|mainly|predominantly|primarily"
    r"|largely|majority)\b",
    re.I,
)
ALL_CELLS_RE = re.compile(
    r"\b(?:every|each|all(?:\s+the)?)\s+(?:of\s+the\s+)?(?:nine\s+)?(?:grid\s+)?cells?\b"
    r"|\ball\s+nine\s+(?:grid\s+)?cells\b",
    re.I,
)
# cell names in parentheses after a numbered list ("cells 1 and 2 (top-left and top-centre)"): the
# same cells again, not a second reference to pair
PAREN_POSITIONS_RE = re.compile(
    r"\((?:\s*(?:and\s+)?(?:top|upper|centre|center|central|middle|bottom|lower)(?:[\s-]+(?:left|centre|center|middle|right))?\s*,?)+\)",
    re.I,
)


def check_products(ctx: Context, field: str, text: str) -> tuple[list[str], list[Span]]:
    """The land-cover map named: its product, version and year (or date range) must be the facts'."""
    lc = land_cover(ctx.facts)
    out: list[str] = []
    spans: list[Span] = []
    for m in PRODUCT_RE.finditer(text):
        spans.append(m.span())
        said = m.group(0).strip()
        if lc is None:
            out.append(
                f"{field}: '{said}' names a land-cover map but the facts have none (no ext.land_cover)"
            )
            continue
        product = "dynamic-world" if m.group("name").lower().startswith("dynamic") else "esa-worldcover"
        if product != lc["product"]:
            out.append(f"{field}: '{said}' but the facts' land cover is {land_cover_product_phrase(lc)}")
            continue
        out += _check_edition(field, said, m, lc)
    return out, spans


def _check_edition(field: str, said: str, m: re.Match[str], lc: Mapping[str, Any]) -> list[str]:
    out = []
    dr = lc.get("date_range") or []
    years = {int(lc["year"])} if lc.get("year") else {int(d[:4]) for d in dr}
    year = m.group("pre") or m.group("year")
    if year and int(year) not in years:
        out.append(f"{field}: '{said}' but the facts' map is {land_cover_product_phrase(lc)}")
    if m.group("ver") and m.group("ver").lower() != str(lc.get("version") or "").lower():
        out.append(f"{field}: '{said}' but the facts' map is version {lc.get('version')}")
    if m.group("d1") and [m.group("d1"), m.group("d2")] != list(dr):
        out.append(f"{field}: '{said}' but the facts' map covers {dr or 'no date range'}")
    return out


def _class_mentions(text: str, context: str) -> list[Mention]:
    """Land-cover names of a text; an ordinary word ("water", "built") only in a sentence about land
    cover (in `context`: the text before its map names were masked), and never "open water"."""
    sentences = sentence_spans(context)
    out = []
    for m in mentions(text, land_cover=True):
        if m.key in AMBIGUOUS_LAND_COVER:
            a, b = in_sentences(sentences, m.start)
            if not LAND_COVER_CONTEXT_RE.search(context, a, b) or re.search(
                r"\bopen\s+$", text[a : m.start], re.I
            ):
                continue
        out.append(m)
    return out


def _refs(text: str) -> list[Ref]:
    masked = PAREN_POSITIONS_RE.sub(lambda m: " " * len(m.group(0)), text)
    refs = cell_refs(masked, set())
    refs += [Ref(m.start(), m.end(), list(range(1, 10)), []) for m in ALL_CELLS_RE.finditer(masked)]
    return sorted(refs, key=lambda r: r.start)


def _owner(text: str, ms: list[Mention], ref: Ref, a: int, b: int, refs: list[Ref]) -> Mention | None:
    """The class a cell list belongs to: the nearest before it in its comma-separated part of the clause
    ("cropland in cells 4 and 8"), else the nearest after it ("cells 1 and 2 are mostly cropland")."""
    inside = [(r.start, r.end) for r in refs]
    commas = [i for i in range(a, b) if text[i] == "," and not any(s <= i < e for s, e in inside)]
    seg_a = max([i for i in commas if i < ref.start], default=a)
    before = [m for m in ms if seg_a <= m.start and m.end <= ref.start]
    if before:
        return max(before, key=lambda m: m.end)
    after = [m for m in ms if m.start >= ref.end]
    return min(after, key=lambda m: m.start, default=None) or nearest(ms, ref.start, ref.end)


def check_land_cover(
    ctx: Context, field: str, text: str, context: str | None = None
) -> tuple[list[str], list[Span]]:
    """Classes, dominance, cells and percentages of land cover (see the module docstring); `context`:
    the same text before masking (same length), where the sentences name their map."""
    lc = land_cover(ctx.facts)
    ms = _class_mentions(text, text if context is None else context)
    if not ms:
        return [], []
    out: list[str] = []
    spans: list[Span] = [(m.start, m.end) for m in ms]
    if lc is None:
        return [problem for m in ms if (problem := _presence(field, text, lc, m))], spans
    refs = _refs(text)
    owners: set[Mention] = set()
    for a, b in clause_spans(text):
        cms = [m for m in ms if a <= m.start < b]
        if not cms:
            continue
        crefs = [r for r in refs if a <= r.start < b]
        spans += [x.span() for x in PAREN_POSITIONS_RE.finditer(text, a, b)]
        dom = DOMINANT_RE.search(text, a, b)
        cells: list[int] = []
        for ref in crefs:
            owner = _owner(text, cms, ref, a, b, crefs)
            spans.append((ref.start, ref.end))
            if owner is None or negated(text, owner.start, owner.end):
                continue  # a denied class: _presence says it is never stated absent
            owners.add(owner)
            cells += ref.cells
            out += _check_cells(field, lc, owner, ref.cells, dom is not None)
        if dom and not crefs:
            owner = nearest(cms, dom.start(), dom.end())
            if owner is not None and owner.key != lc["dominant"]:
                out.append(
                    f"{field}: '{owner.words}' is said to dominate but the dominant "
                    f"{PRODUCT_NAMES[lc['product']]} class is {lc['dominant']!r}"
                )
        for p in PERCENT_RE.finditer(text, a, b):
            owner = owner_before_paren(text, cms, p.start(), a) or nearest(cms, p.start(), p.end())
            if owner is None:
                continue
            spans.append(p.span())
            allowed = [100.0 * float(lc["fractions"].get(owner.key) or 0.0)]
            allowed += [100.0 * float(lc["cells"][c - 1]["fractions"].get(owner.key) or 0.0) for c in cells]
            if not percent_ok(p, allowed):
                out.append(
                    f"{field}: '{p.group(0).strip()}' of {owner.key} but the facts have "
                    f"{allowed[0]:.0f} % of the mapped area"
                )
    # a class tied to cells is judged by its cells' fractions; any other by the chip's
    out += [problem for m in ms if m not in owners and (problem := _presence(field, text, lc, m))]
    return out, spans


def _presence(field: str, text: str, lc: Mapping[str, Any] | None, m: Mention) -> str | None:
    """A class named must be in the map's chip fractions, and is never stated absent."""
    if negated(text, m.start, m.end):
        return f"{field}: land-cover class '{m.key}' is stated absent: a land-cover map never says so"
    if lc is None:
        return f"{field}: land-cover class '{m.key}' but the facts have no land-cover map"
    if float(lc["fractions"].get(m.key) or 0.0) <= 0.0:
        return (
            f"{field}: land-cover class '{m.key}' is not in the facts "
            f"({PRODUCT_NAMES[lc['product']]} classes: {', '.join(sorted(lc['fractions']))})"
        )
    return None


def _check_cells(field: str, lc: Mapping[str, Any], owner: Mention, cells: list[int], dom: bool) -> list[str]:
    out = []
    for c in cells:
        cell = lc["cells"][c - 1]
        ok = (
            cell.get("dominant") == owner.key if dom else float(cell["fractions"].get(owner.key) or 0.0) > 0.0
        )
        if not ok:
            out.append(
                f"{field}: cell {c} is said to hold {'mostly ' if dom else ''}{owner.key} but the map's "
                f"leading class there is {cell.get('dominant')!r} ({', '.join(sorted(cell['fractions']))})"
            )
    return out


__all__ = ["check_land_cover", "check_products"]
