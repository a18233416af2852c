"""Numbers of a caption field: percentages, lengths / distances / dB / degrees, the chip size and target
counts, each against the fact it may state.
"""

from __future__ import annotations

import re

from triplet_builder.text.checks.context import (
    Context,
    Ref,
    clause_of,
    clause_spans,
    count_value,
    decimals,
    number,
)
from triplet_builder.text.checks.patterns import (
    AFTER_COUNT_CELLS_RE,
    MEASURE_RE,
    PERCENT_RE,
    PERCENT_SIGN_RE,
    SIZE_RE,
    SKIP_MODS,
    TOPIC_RES,
)
from triplet_builder.text.classes import OSM_PHRASE_RE
from triplet_builder.text.conventions import (
    PERCENT_TOLERANCE,
    canonical_label,
)

FIELD_TOPICS = {
    "water": {"water", "land", "nodata"},
    "buildings": {"bright"},
    "targets": set(),
}


def percent_ok(m: re.Match[str], allowed: list[float]) -> bool:
    """Does a PERCENT_RE match state one of the `allowed` fractions (in %) under the dataset's rounding
    (nearest 5 %: a plain value within half a step; bounds and ranges as written)?"""
    cmp = re.sub(r"\s+", " ", (m.group("cmp") or "").lower())
    if m.group("num"):
        n = number(m.group("num"))
        if cmp in ("less than", "fewer than", "under", "below"):
            ok = any(f < n + 1e-9 for f in allowed)
        elif cmp in ("more than", "over", "above"):
            ok = any(f > n - 1e-9 for f in allowed)
        elif cmp == "at least":
            ok = any(f >= n - 0.5 for f in allowed)
        elif cmp in ("at most", "up to"):
            ok = any(f <= n + 0.5 for f in allowed)
        else:
            ok = any(abs(f - n) <= PERCENT_TOLERANCE + 1e-6 for f in allowed)
        return ok
    lo = number(m.group("blo") or m.group("rlo"))
    hi = number(m.group("bhi") or m.group("rhi"))
    return any(lo - 0.5 <= f < hi + 1.0 for f in allowed)


def check_percentages(ctx: Context, field: str, text: str, refs: list[Ref]) -> list[str]:
    """Each percentage must match a fraction of a surface type named in its clause (of the whole chip,
    or of the cells the clause names), or, when the clause names none, any fraction the field may
    state."""
    out: list[str] = []
    if PERCENT_SIGN_RE.search(text) is None:
        return out
    clauses = clause_spans(text)
    for m in PERCENT_RE.finditer(text):
        a, b = clause_of(clauses, m.start())
        topics = {t for t, rx in TOPIC_RES.items() if rx.search(text, a, b)}
        if topics:
            cells = [c for r in refs if a <= r.start < b for c in r.cells]
            topics &= FIELD_TOPICS.get(field, set(TOPIC_RES))
            allowed = [f for t in sorted(topics) for f in ctx.topic_fractions(t, cells)]
        else:
            allowed = ctx.fractions(field)
        ok = percent_ok(m, allowed)
        if not ok:
            out.append(f"{field}: '{m.group(0).strip()}' matches no fraction of the facts it may state")
    return out


def check_measures(ctx: Context, field: str, text: str) -> list[str]:
    f = ctx.facts
    chip, place, loc = f["chip"], f.get("place"), f["location"]
    metres = [chip["width_m"], chip["height_m"], chip["pixel_size_m"]]
    metres += [chip[k] for k in ("pixel_size_x_m", "pixel_size_y_m") if k in chip]
    metres += [o["length_m"] for o in ctx.objects if o.get("length_m") is not None]
    metres += [d["length_m"] for d in ctx.detections if d.get("length_m") is not None]  # null: unknown size
    if place:
        metres.append(place["distance_km"] * 1000.0)
    s = ctx.surface
    dbs = [s["mean_db"], s["std_db"], *(d["peak_db"] for d in ctx.detections)]
    dbs += [
        s[k]
        for k in ("water_threshold_db", "water_threshold_cross_db", "bright_threshold_db")
        if s.get(k) is not None
    ]
    degrees = [abs(loc["centre_lat"]), abs(loc["centre_lon"])]
    out = []
    for m in MEASURE_RE.finditer(text):
        unit = m.group("unit").lower()
        for tok in (m.group("a"), m.group("b")):
            if tok is None:
                continue
            v = number(tok)
            rnd = 0.5 * 10.0 ** -decimals(tok)
            if unit == "°":
                ok = any(abs(v - t) <= rnd + 1e-9 for t in degrees)
                what = "coordinate"
            elif unit == "db":
                ok = any(abs(v - abs(t)) <= max(rnd, 0.05) + 1e-9 for t in dbs)
                what = "dB value"
            else:
                factor = 1000.0 if unit.startswith("k") else 1.0
                vm = v * factor
                ok = any(abs(vm - t) <= max(rnd * factor, 0.05 * t, 0.5) + 1e-9 for t in metres)
                what = "length / distance"
            if not ok:
                out.append(f"{field}: {what} '{m.group(0).strip()}' matches nothing in the facts")
    return out


def check_sizes(ctx: Context, field: str, text: str) -> list[str]:
    """A stated size "W x H" must be the chip's (width_m, height_m) or its pixel size (x, y), in that order:
    the two differ for degree pixels, and a swapped pair is false."""
    chip = ctx.facts["chip"]
    pairs = [(chip["width_m"], chip["height_m"])]
    pairs.append(
        (chip.get("pixel_size_x_m", chip["pixel_size_m"]), chip.get("pixel_size_y_m", chip["pixel_size_m"]))
    )
    out = []
    for m in SIZE_RE.finditer(text):
        factor = 1000.0 if m.group("unit") == "km" else 1.0
        vals = []
        for tok in (m.group("a"), m.group("b")):
            rnd = 0.5 * 10.0 ** -decimals(tok) * factor
            vals.append((number(tok) * factor, rnd))
        if not any(
            all(
                abs(v - t) <= max(rnd, 0.005 * t, 0.05) + 1e-9 for (v, rnd), t in zip(vals, pair, strict=True)
            )
            for pair in pairs
        ):
            out.append(
                f"{field}: size '{m.group(0).strip()}' is not the chip's width x height nor its pixel size"
            )
    return out


def check_counts(ctx: Context, field: str, text: str, refs: list[Ref]) -> list[str]:
    """Each count of a class ("5 labelled ships", "no wind turbines") must equal a fact: the labelled
    objects / detections, or the OSM count; "no X" only for a class the facts list as looked for."""
    out = []
    clauses = clause_spans(text)
    for m in ctx.count_re.finditer(text):
        mods = {w.lower() for w in m.group("mods").split()}
        if mods & SKIP_MODS:
            continue
        key = canonical_label(m.group("noun"))
        n = count_value(m.group("count"))
        cells: list[int] | None = None
        after = AFTER_COUNT_CELLS_RE.match(text, m.end())
        if after:
            ref = next((r for r in refs if r.start == after.end()), None)
            if ref is not None:
                cells = ref.cells
        true = ctx.count(key, cells)
        osm = ctx.osm_count(m.group("noun"), cells)
        a, b = clause_of(clauses, m.start())
        if osm is not None and (n == osm or OSM_PHRASE_RE.search(text, a, b)):
            true = osm  # the OSM fact the text states ("3 storage tanks are mapped in OpenStreetMap")
        if n != true:
            where = f" in cells {','.join(map(str, cells))}" if cells is not None else ""
            out.append(f"{field}: '{m.group(0).strip()}' says {n} {key}(s){where} but the facts have {true}")
        elif n == 0 and not ctx.negative_ok(key, m.group("noun")):
            out.append(
                f"{field}: '{m.group(0).strip()}': {key} is not a labelled class nor a queried feature"
            )
    return out
