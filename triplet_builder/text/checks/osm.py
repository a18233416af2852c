"""OpenStreetMap in a caption field, against `ext.osm` (schemas/facts_ext/osm.schema.json).

In a clause that names OpenStreetMap (or anywhere in the `roads` field, which only OSM fills), every OSM
feature named must be mapped in `ext.osm.features`; "no X" / "X are not mapped" only for a feature in
`queried` that is absent; a count must be the feature's `count`, a length (m / km) its `length_m` within
the writer's rounding (10 m under 1 km, 0.1 km above: half a stated unit, at least 5 m), a percentage
the building footprint share (`built_up_fraction`) or an area feature's share of the chip, and the
cells named the feature's cells. `roads` may be non-null only when ext.osm knows roads, railways or
bridges (queried or mapped).

Returns its problems and the spans it judged: numbers, cells and names, masked before the surface,
count and class-name checks (a road length is not a target length, "no building is mapped" does not
deny strong scatterers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from schemas.vocabulary import OSM_FEATURES
from triplet_builder.text.checks.context import (
    Context,
    cell_refs,
    clause_spans,
    count_value,
    decimals,
    number,
)
from triplet_builder.text.checks.land_cover import PAREN_POSITIONS_RE
from triplet_builder.text.checks.numbers import percent_ok
from triplet_builder.text.checks.patterns import COUNT_TOKEN, MEASURE_RE, PERCENT_RE
from triplet_builder.text.checks.vocab import Mention, mentions, nearest, negated, owner_before_paren
from triplet_builder.text.classes import OSM_PHRASE_RE, osm_section

Span = tuple[int, int]
ROAD_FEATURES = ("road", "railway", "bridge")
LENGTH_MIN_TOLERANCE_M = 5.0  # the writer rounds lengths under 1 km to 10 m
COUNT_BEFORE_RE = re.compile(
    rf"(?<![\w.,-])(?P<count>{COUNT_TOKEN})\s+(?:(?:mapped|OSM|OpenStreetMap)\s+)?$", re.I
)


def roads_supported(facts: Mapping[str, Any]) -> bool:
    """May the `roads` field be non-null: does ext.osm know roads, railways or bridges (queried or
    mapped)?"""
    osm = osm_section(facts)
    if not osm:
        return False
    known = set(osm.get("queried") or []) | set(osm.get("features") or {})
    return bool(known & set(ROAD_FEATURES))


def _share(facts: Mapping[str, Any], feat: Mapping[str, Any] | None) -> float | None:
    chip = facts["chip"]
    ground = float(chip["width_m"]) * float(chip["height_m"])
    if not feat or feat.get("area_m2") is None or ground <= 0:
        return None
    return float(feat["area_m2"]) / ground


def check_osm(ctx: Context, field: str, text: str) -> tuple[list[str], list[Span], list[Span]]:
    """(problems, number / cell spans, name spans) of the OSM clauses of a field."""
    osm = osm_section(ctx.facts)
    feats: Mapping[str, Any] = (osm or {}).get("features") or {}
    queried = set((osm or {}).get("queried") or [])
    out: list[str] = []
    numbers: list[Span] = []
    names: list[Span] = []
    for a, b in clause_spans(text):
        if field != "roads" and not OSM_PHRASE_RE.search(text, a, b):
            continue
        ms = [m for m in mentions(text[:b]) if m.start >= a and m.key in OSM_FEATURES]
        for m in ms:
            names.append((m.start, m.end))
            out += _check_name(field, text, m, a, osm, feats, queried)
        if osm is None or not ms:
            continue
        out += _check_lengths(field, text, a, b, ms, feats, numbers)
        out += _check_percents(ctx, field, text, a, b, ms, feats, numbers)
        out += _check_cells(field, text, a, b, ms, feats, numbers)
    return out, numbers, names


def _check_name(
    field: str,
    text: str,
    m: Mention,
    a: int,
    osm: Mapping[str, Any] | None,
    feats: Mapping[str, Any],
    queried: set[str],
) -> list[str]:
    key, feat = m.key, feats.get(m.key)
    if osm is None:
        return [f"{field}: OSM feature '{key}' but the facts have no OpenStreetMap data (no ext.osm)"]
    if negated(text, m.start, m.end, a):
        if feat:
            return [f"{field}: says no {key} but OpenStreetMap maps {feat['count']} in the facts"]
        if key not in queried:
            return [f"{field}: says no {key} but '{key}' was not queried in OpenStreetMap: no negative"]
        return []
    if not feat:
        why = "queried, none mapped" if key in queried else "not queried"
        return [f"{field}: OSM feature '{key}' is not in the facts (OpenStreetMap: {why})"]
    count = COUNT_BEFORE_RE.search(text, a, m.start)
    if count and count_value(count.group("count")) != int(feat["count"]):
        return [f"{field}: '{count.group(0)}{m.words}' but OpenStreetMap maps {feat['count']} {key}(s)"]
    return []


def _check_lengths(
    field: str, text: str, a: int, b: int, ms: list[Mention], feats: Mapping[str, Any], spans: list[Span]
) -> list[str]:
    """Each length in the clause against the line feature it belongs to; "910 m and 970 m" are two
    lengths, "2-3 km" one range."""
    lines = [m for m in ms if OSM_FEATURES[m.key] == "line"]
    out = []
    for m in MEASURE_RE.finditer(text, a, b):
        unit = m.group("unit").lower()
        if unit in ("db", "°") or not lines:
            continue
        spans.append(m.span())
        factor = 1000.0 if unit.startswith("k") else 1.0
        toks = [(m.group("a"), m.start(), m.end())]
        if m.group("b"):
            if not re.search(r"\band\b", text[m.end("a") : m.start("b")]):  # a range: one claim
                out += _one_length(field, text, lines, feats, (m.group("a"), m.group("b")), factor, m, a)
                continue
            toks = [(m.group("a"), m.start(), m.start("b")), (m.group("b"), m.start("b"), m.end())]
        for i, (tok, t0, t1) in enumerate(toks):
            own = re.match(r"\s*(km|m)\b", text[m.end("a") :]) if i == 0 and len(toks) == 2 else None
            f = (1000.0 if own.group(1) == "km" else 1.0) if own else factor  # "13.2 km and 430 m"
            out += _one_length(field, text, lines, feats, (tok, tok), f, m, a, (t0, t1))
    return out


def _one_length(
    field: str,
    text: str,
    lines: list[Mention],
    feats: Mapping[str, Any],
    bounds: tuple[str, str],
    factor: float,
    m: re.Match[str],
    a: int,
    where: tuple[int, int] | None = None,
) -> list[str]:
    """One stated length (or range lo..hi) of its line feature, within the writer's rounding."""
    t0, t1 = where or m.span()
    owner = _length_owner(text, lines, t0, t1, a)
    lo, hi = (number(t) * factor for t in bounds)
    tol = max(0.5 * 10.0 ** -max(decimals(t) for t in bounds) * factor, LENGTH_MIN_TOLERANCE_M)
    true = (feats.get(owner.key) or {}).get("length_m")
    if true is not None and lo - tol - 1e-9 <= float(true) <= hi + tol + 1e-9:
        return []
    fact = f"{float(true):.0f} m" if true is not None else "no length"
    said = re.sub(r"\s+and$", "", text[t0:t1].strip()) if where else m.group(0).strip()
    return [f"{field}: '{said}' of {owner.key} but OpenStreetMap has {fact}"]


LENGTH_OF_RE = re.compile(r"\s+of\s+(?:the\s+)?(?:mapped\s+)?$", re.I)  # "2.4 km of roads"
LENGTH_OVER_RE = re.compile(
    r"\s+(?:over|of|for|totall?ing|measuring|along)\s+(?:about\s+)?$", re.I
)  # "roads over 2.4 km"


def _length_owner(text: str, lines: list[Mention], start: int, end: int, a: int) -> Mention:
    """The line feature a length belongs to: "2.4 km of roads", "roads over 2.4 km", "roads (2.4 km)";
    else the nearest one."""
    after = min((m for m in lines if m.start >= end), key=lambda m: m.start, default=None)
    if after is not None and LENGTH_OF_RE.fullmatch(" " + text[end : after.start]):
        return after
    before = max((m for m in lines if m.end <= start), key=lambda m: m.end, default=None)
    if before is not None and LENGTH_OVER_RE.fullmatch(text[before.end : start]):
        return before
    owner = owner_before_paren(text, lines, start, a) or nearest(lines, start, end)
    assert owner is not None
    return owner


def _check_percents(
    ctx: Context,
    field: str,
    text: str,
    a: int,
    b: int,
    ms: list[Mention],
    feats: Mapping[str, Any],
    spans: list[Span],
) -> list[str]:
    allowed: list[float] = []
    built = (osm_section(ctx.facts) or {}).get("built_up_fraction")
    if built is not None and any(m.key == "building" for m in ms):
        allowed.append(100.0 * float(built))
    for m in ms:
        share = _share(ctx.facts, feats.get(m.key)) if OSM_FEATURES[m.key] == "area" else None
        if share is not None:
            allowed.append(100.0 * share)
    out = []
    for p in PERCENT_RE.finditer(text, a, b):
        spans.append(p.span())
        if not percent_ok(p, allowed):
            out.append(f"{field}: '{p.group(0).strip()}' matches no OpenStreetMap share of the facts")
    return out


def _check_cells(
    field: str, text: str, a: int, b: int, ms: list[Mention], feats: Mapping[str, Any], spans: list[Span]
) -> list[str]:
    masked = PAREN_POSITIONS_RE.sub(lambda x: " " * len(x.group(0)), text[:b])
    spans += [x.span() for x in PAREN_POSITIONS_RE.finditer(text, a, b)]
    out = []
    for ref in cell_refs(masked, set()):
        if ref.start < a:
            continue
        spans.append((ref.start, ref.end))
        owner = nearest(ms, ref.start, ref.end)
        if owner is None or negated(text, owner.start, owner.end, a):
            continue
        have = set((feats.get(owner.key) or {}).get("cells") or [])
        wrong = sorted(set(ref.cells) - have)
        if wrong:
            out.append(
                f"{field}: {owner.key} said to lie in cells {wrong} but OpenStreetMap maps it in {sorted(have)}"
            )
    return out


__all__ = ["ROAD_FEATURES", "check_osm", "roads_supported"]
