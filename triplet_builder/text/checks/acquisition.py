"""Dates, acquisition (season, orbit, polarisations, convention, sensor), names and places, ungrounded
claims and hedges of a caption field.
"""

from __future__ import annotations

import re
from datetime import date

from triplet_builder.text.checks.context import (
    Context,
    mask_spans,
)
from triplet_builder.text.checks.patterns import (
    BOUNDARY_RE,
    COMPASS_DEG,
    CONVENTION_RE,
    DIRECTION_RE,
    GREEK,
    HEDGE_RE,
    ISO_DATE_RE,
    MONTHS,
    NEGATION,
    ORBIT_RE,
    POL_RE,
    REFUSAL_RE,
    SEASON_RE,
    SENSOR_RE,
    TEXT_DATE_RE,
    WORD_RE,
    YEAR_RE,
)
from triplet_builder.text.conventions import (
    WATER_PRESENT,
    has_boundary,
)


def find_dates(text: str, facts_date: date) -> tuple[list[tuple[int, int]], list[str]]:
    """Spans of dates in a text and the problems with them (a date, month or year that is not the
    acquisition's)."""
    spans: list[tuple[int, int]] = []
    problems: list[str] = []
    for m in ISO_DATE_RE.finditer(text):
        spans.append(m.span())
        if m.group(0) != facts_date.isoformat():
            problems.append(f"date {m.group(0)} is not the acquisition date {facts_date.isoformat()}")
    masked = mask_spans(text, spans)
    for m in TEXT_DATE_RE.finditer(masked):
        month = m.group("month")
        has_number = any(m.group(g) for g in ("d1", "d2", "y"))
        if month == "May" and not has_number:
            continue  # the modal verb, caught as a hedge
        spans.append(m.span())
        mi = MONTHS.index(month) + 1
        day = m.group("d1") or m.group("d2")
        year = m.group("y")
        if (
            mi != facts_date.month
            or (day and int(day) != facts_date.day)
            or (year and int(year) != facts_date.year)
        ):
            problems.append(
                f"date '{m.group(0).strip()}' is not the acquisition date {facts_date.isoformat()}"
            )
    masked = mask_spans(text, spans)
    for m in YEAR_RE.finditer(masked):
        spans.append(m.span())
        if int(m.group("y")) != facts_date.year:
            problems.append(f"year {m.group('y')} is not the acquisition year {facts_date.year}")
    return spans, problems


def check_hedges(where: str, text: str, date_spans: list[tuple[int, int]]) -> list[str]:
    out = []
    for m in HEDGE_RE.finditer(text):
        if m.group("word").lower() == "may" and any(a <= m.start() < b for a, b in date_spans):
            continue
        out.append(f"{where}: hedge word '{m.group('word')}'")
    for m in REFUSAL_RE.finditer(text):
        out.append(f"{where}: refusal / non-answer '{m.group(0)}'")
    return out


def check_names(ctx: Context, field: str, text: str) -> list[str]:
    out = []
    for m in WORD_RE.finditer(text):
        tok = m.group(0)
        if not tok[0].isupper() or tok.lower() in ctx.allowed_names:
            continue
        if m.start() > 0 and text[m.start() - 1].isdigit():
            continue  # the letter of an alphanumeric code ("1B" of Sentinel-1B): checked as a sensor
        before = text[: m.start()].rstrip(" \t\n\"'“‘")
        if not before or before[-1] in ".!?:;":
            continue  # sentence-initial: an ordinary word can be capitalised here
        out.append(
            f"{field}: name '{tok}' is not in the facts (place: {ctx.facts.get('place') and ctx.facts['place']['name']})"
        )
    place = ctx.facts.get("place")
    for m in DIRECTION_RE.finditer(text):
        if not place or place["direction"] == "at":
            continue
        if not m.group("rest").lower().startswith(place["name"].lower()):
            continue
        d = re.sub(r"[\s-]", "", m.group("dir").lower())
        code = "".join(
            {"north": "N", "south": "S", "east": "E", "west": "W"}[p]
            for p in re.findall(r"north|south|east|west", d)
        )
        diff = abs(COMPASS_DEG[code] - COMPASS_DEG[place["direction"]]) % 360
        if min(diff, 360 - diff) > 45:
            out.append(
                f"{field}: '{m.group('dir')} of {place['name']}' but the facts say {place['direction']}"
            )
    return out


def check_acquisition(ctx: Context, field: str, text: str) -> list[str]:
    acq = ctx.facts["acquisition"]
    out = []
    for m in SEASON_RE.finditer(text):
        if m.group("season").lower() != (acq.get("season") or ""):
            out.append(f"{field}: season '{m.group('season')}' but the facts say {acq.get('season')}")
    for m in ORBIT_RE.finditer(text):
        if m.group("orbit").lower() != (acq.get("orbit_direction") or ""):
            out.append(f"{field}: orbit '{m.group('orbit')}' but the facts say {acq.get('orbit_direction')}")
    pols = {p.upper() for p in acq.get("polarisations") or []}
    for m in POL_RE.finditer(text):
        if m.group("pol") not in pols:
            out.append(f"{field}: polarisation {m.group('pol')} is not among {sorted(pols)}")
    for m in CONVENTION_RE.finditer(text):  # `unknown` in the facts: no convention may be named
        said = (m.group("word") or GREEK[m.group("greek").lower()]).lower() + "0"
        if said != acq.get("backscatter"):
            out.append(f"{field}: '{m.group(0)}' but the facts say backscatter {acq.get('backscatter')}")
    sensor = re.sub(r"[^a-z0-9]", "", (acq.get("sensor") or "").lower())
    for m in SENSOR_RE.finditer(text):
        said = re.sub(r"[^a-z0-9]", "", m.group("sensor").lower())
        if not (sensor.startswith(said) or said.startswith(sensor)):
            out.append(f"{field}: sensor '{m.group('sensor')}' but the facts say {acq.get('sensor')}")
    return out


def check_claims(ctx: Context, field: str, text: str) -> list[str]:
    """A land/water boundary claimed (or denied) against the facts."""
    out = []
    for m in BOUNDARY_RE.finditer(text):
        window = text[max(0, m.start() - 30) : m.start()]
        if re.search(rf"\b{NEGATION}\b(?:\s+[^\W\d_]+){{0,2}}\s*$", window, re.I):
            if has_boundary(ctx.facts):
                out.append(f"{field}: denies a '{m.group(0)}' but the facts have a land/water boundary")
            continue
        w = ctx.surface["water_fraction"]
        if not (has_boundary(ctx.facts) or WATER_PRESENT <= w <= 1.0 - WATER_PRESENT):
            out.append(f"{field}: '{m.group(0)}' but the facts have no land/water boundary")
    return out  # the terms no fact supports: text/checks/names.py
