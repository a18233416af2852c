"""Caption fields (FUSAR-GEOVL structure) written from a chip's fact sheet alone: the caption side of
the offline writer (text/offline.py), one function per field.

Each field function takes the fact sheet and a `random.Random` seeded for that field (the writer seeds
one per field, so a change to one field's templates leaves the others' choices alone) and returns the
field's text, or None when the facts say nothing about it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from triplet_builder.text.consistency import (
    CELL_NAMES,
    MOSTLY,
    NODATA_CELL,
    NUMBER_WORDS,
    WATER_PRESENT,
    canonical_label,
    cells_of,
    format_percent,
    has_boundary,
    label_words,
    plural,
    targets_for,
    water_cells,
)

BRIGHT_CELL = 0.1  # cells named as holding strong scatterers
BUILDINGS_RARE = 0.02  # below this bright fraction strong scatterers are "rare"
NEAR_PLACE_KM = 25.0  # detections on water this close to a named place imply waters used by vessels

_DIRECTION_WORDS = {
    "N": "north", "NE": "north-east", "E": "east", "SE": "south-east",
    "S": "south", "SW": "south-west", "W": "west", "NW": "north-west",
}  # fmt: skip
_WORDS_OF = {v: k for k, v in NUMBER_WORDS.items()}
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def _num(x: float, decimals: int = 1) -> str:
    r = round(float(x), decimals)
    if abs(r - round(r)) < 1e-9:
        return str(round(r))
    return f"{r:.{decimals}f}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count(n: int, rng: random.Random, words: bool | None = None) -> str:
    """A count as digits or (up to twelve) as a word; words=None: a seeded choice."""
    if words is None:
        words = rng.random() < 0.5
    return _WORDS_OF[n] if words and n <= 12 else str(n)


def _cells(cells: Sequence[int], rng: random.Random) -> str:
    """'cell 4' / 'cells 1, 2 and 7', sometimes with the cell names."""
    nums = [str(c) for c in cells]
    s = f"cell {nums[0]}" if len(nums) == 1 else f"cells {_join(nums)}"
    if rng.random() < 0.4:
        s += " (" + _join([CELL_NAMES[c] for c in cells]) + ")"
    return s


def _verb(plural_subject: bool, pl: str, sg: str) -> str:
    return pl if plural_subject else sg


def _date_text(d: date, rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return d.isoformat()
    if style == 1:
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"
    return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"


def _lengths(values: Sequence[float]) -> list[str]:
    return [f"{_num(v, 0)} m" for v in sorted(values)]


Template = Callable[..., str]


# == caption fields ================================================================================
def _place_phrase(facts: dict[str, Any], rng: random.Random) -> str:
    place, loc = facts.get("place"), facts["location"]
    lat, lon = loc["centre_lat"], loc["centre_lon"]
    coords = f"{abs(lat):.2f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.2f}° {'E' if lon >= 0 else 'W'}"
    if not place:
        return f"at {coords}"
    parts = [place["name"]]
    if place.get("admin1") and place["admin1"] != place["name"] and rng.random() < 0.7:
        parts.append(place["admin1"])
    parts.append(place["country"])
    full = ", ".join(parts)
    if place["direction"] == "at":
        phrase = f"at {full}"
    else:
        d = place["distance_km"]
        phrase = f"{_num(d, 1 if d < 10 else 0)} km {_DIRECTION_WORDS[place['direction']]} of {full}"
    if rng.random() < 0.3:
        phrase += f" ({coords})"
    return phrase


def _terrain(facts: dict[str, Any], rng: random.Random) -> str:
    acq, chip, surface = facts["acquisition"], facts["chip"], facts["surface"]
    sensor = acq["sensor"] + (f" {acq['mode']}" if acq.get("mode") and rng.random() < 0.5 else "")
    pols = list(acq.get("polarisations") or [])
    pol_text = ""
    if pols:
        pol_text = rng.choice(
            [f"{'/'.join(pols)} polarisation", f"{_join(pols)} polarisation{'s' if len(pols) > 1 else ''}"]
        )
    bs = acq.get("backscatter")
    bs_text = f"{bs} backscatter" if bs and bs != "unknown" else ""
    pols_bs = ", ".join(t for t in (pol_text, bs_text) if t) or "SAR backscatter"
    when = _date_text(date.fromisoformat(acq["date"]), rng)
    if acq.get("season"):
        when += rng.choice([f" in {acq['season']}", f" ({acq['season']})"])
    if acq.get("orbit_direction"):
        orbit = acq["orbit_direction"]
        article = "an" if orbit[:1] in "aeiou" else "a"
        when += rng.choice([f" on {article} {orbit} pass", f" from {article} {orbit} orbit"])
    w, h = chip["width_m"], chip["height_m"]
    mw, mh = (_num(w, 0), _num(h, 0)) if min(w, h) >= 100 else (_num(w), _num(h))
    size = rng.choice(
        [
            f"{mw} m × {mh} m",
            f"{_num(w / 1000, 2)} km × {_num(h / 1000, 2)} km",
            f"{mw} by {mh} m",
        ]
    )
    ps = _num(chip["pixel_size_m"], 2)
    if "pixel_size_x_m" in chip:  # the axes differ (e.g. degree pixels): state both
        ps = f"{_num(chip['pixel_size_x_m'], 2)} m × {_num(chip['pixel_size_y_m'], 2)}"
    pixels = rng.choice(
        [
            f"{chip['width_px']} × {chip['height_px']} pixels of {ps} m",
            f"{chip['width_px']} by {chip['height_px']} pixels at {ps} m per pixel",
        ]
    )
    place = _place_phrase(facts, rng)
    v = {"sensor": sensor, "pols_bs": pols_bs, "when": when, "size": size, "pixels": pixels, "place": place}
    first = rng.choice(
        [
            "This {sensor} SAR image ({pols_bs}) was acquired on {when}; it covers {size} ({pixels}) and is centred {place}.",
            "Acquired by {sensor} on {when}, this {size} chip ({pols_bs}, {pixels}) lies {place}.",
            "The chip, {size} in size ({pixels}), lies {place}; {sensor} imaged it on {when} ({pols_bs}).",
            "A {sensor} acquisition of {when} ({pols_bs}) provides this {size} chip ({pixels}), located {place}.",
            "Located {place}, this {size} chip ({pixels}) comes from a {sensor} image ({pols_bs}) acquired on {when}.",
        ]
    ).format(**v)
    water, land = surface["water_fraction"], surface["land_fraction"]
    wp, lp = format_percent(water), format_percent(land)
    if water <= 0.0:
        second = rng.choice(
            [
                f"Land covers {lp} of the valid area, with no open water.",
                f"Its surface is land ({lp} of the valid pixels) without any open water.",
                f"No open water is present; land covers {lp} of the valid area.",
                f"Its surface is {lp} land and holds no open water.",
            ]
        )
    else:
        second = rng.choice(
            [
                f"Open water covers {wp} of the valid area and land {lp}.",
                f"Land makes up {lp} of the valid pixels and smooth open water {wp}.",
                f"Its surface is {lp} land and {wp} open water.",
                f"By area, {lp} of the valid pixels are land and {wp} are open water.",
            ]
        )
    return f"{first} {second}"


def _functionality(facts: dict[str, Any], rng: random.Random, near_place_km: float) -> str | None:
    place = facts.get("place")
    vessels = bool(targets_for(facts, "ship"))
    planes = bool(targets_for(facts, "plane"))
    near_place = place is not None and place["distance_km"] <= near_place_km
    on_water = any(d["on_water"] for d in (facts.get("detections") or {}).get("items", []))
    if not vessels and on_water and near_place:
        vessels = True
        near = f" near {place['name']}" if place else ""
    else:
        near = f" near {place['name']}" if near_place and place and rng.random() < 0.5 else ""
    parts = []
    if vessels:
        parts.append(
            rng.choice(
                [
                    f"The waters{near} are used by vessels.",
                    f"Vessels use the waters{near}.",
                    f"The open water{near} is used by vessels.",
                    f"The waters{near} carry vessel traffic.",
                ]
            )
        )
    if planes:
        parts.append(
            rng.choice(
                [
                    "The area is used by aircraft.",
                    "Aircraft use this area.",
                    "The site is used by aircraft.",
                    "This area serves aircraft.",
                ]
            )
        )
    return " ".join(parts) or None


def _distribution(facts: dict[str, Any], rng: random.Random) -> str:
    s = facts["surface"]
    mean, std = _num(s["mean_db"]), _num(s["std_db"])
    parts = [
        rng.choice(
            [
                f"The mean backscatter is {mean} dB with a standard deviation of {std} dB.",
                f"Backscatter averages {mean} dB (standard deviation {std} dB).",
                f"Across the chip, backscatter has a mean of {mean} dB and a spread of {std} dB.",
                f"Pixel values average {mean} dB and vary with a standard deviation of {std} dB.",
            ]
        )
    ]
    valid = [c for c in s["cells"] if c["valid_fraction"] >= NODATA_CELL]
    nv = len(valid)
    kw = len(water_cells(facts, MOSTLY))
    if nv and kw == nv:
        parts.append(
            rng.choice(
                [
                    "Open water dominates every grid cell.",
                    "Every grid cell is mostly open water.",
                    "The water spreads over the whole grid.",
                    "No grid cell is mostly land.",
                ]
            )
        )
    elif kw == 0 and s["water_fraction"] >= WATER_PRESENT:
        parts.append(
            rng.choice(
                [
                    "Open water is spread thinly: it dominates no grid cell.",
                    "The water is scattered; land dominates every grid cell.",
                    "Although open water is present, every grid cell is mostly land.",
                    "Land dominates every grid cell despite the open water.",
                ]
            )
        )
    elif kw == 0:
        parts.append(
            rng.choice(
                [
                    "Land dominates every grid cell.",
                    "Every grid cell is mostly land.",
                    "The land spreads over the whole grid.",
                    "No grid cell is mostly water.",
                ]
            )
        )
    else:
        words = rng.random() < 0.5
        k, r = _count(kw, rng, words), _count(nv - kw, rng, words)
        grid = f"{nv} grid cells" if nv == 9 else f"{nv} valid grid cells"
        parts.append(
            rng.choice(
                [
                    f"Open water dominates {k} of the {grid} and land the other {r}.",
                    f"Of the {grid}, {k} are mostly water and {r} mostly land.",
                    f"Land dominates {r} grid cells and open water {k}.",
                    f"The grid splits into {k} mostly-water and {r} mostly-land cells.",
                ]
            )
        )
    if s["valid_fraction"] < 0.98:
        nd = format_percent(1.0 - s["valid_fraction"])
        parts.append(
            rng.choice(
                [
                    f"{_cap(nd)} of the chip lies outside the scene and holds no data.",
                    f"No data covers {nd} of the chip, outside the scene footprint.",
                    f"The scene footprint leaves {nd} of the chip without data.",
                    f"{_cap(nd)} of the pixels are no-data pixels outside the scene.",
                ]
            )
        )
    return " ".join(parts)


_LAYOUT_CLAUSES: dict[str, list[Template]] = {
    "water": [
        lambda c, p: f"open water fills {c}",
        lambda c, p: f"{c} {_verb(p, 'are', 'is')} mostly open water",
        lambda c, p: f"the open water lies in {c}",
        lambda c, p: f"{c} {_verb(p, 'hold', 'holds')} mainly open water",
    ],
    "mixed": [
        lambda c, p: f"{c} {_verb(p, 'mix', 'mixes')} land and water",
        lambda c, p: f"{c} {_verb(p, 'hold', 'holds')} both land and water",
        lambda c, p: f"land and water share {c}",
        lambda c, p: f"{c} {_verb(p, 'are', 'is')} part land, part water",
    ],
    "land": [
        lambda c, p: f"land covers {c}",
        lambda c, p: f"{c} {_verb(p, 'are', 'is')} land",
        lambda c, p: f"land fills {c}",
        lambda c, p: f"{c} {_verb(p, 'show', 'shows')} land",
    ],
    "nodata": [
        lambda c, p: f"{c} {_verb(p, 'lie', 'lies')} mostly outside the scene",
        lambda c, p: f"{c} {_verb(p, 'hold', 'holds')} mostly no-data pixels",
        lambda c, p: f"most of {c} {_verb(p, 'fall', 'falls')} outside the scene",
        lambda c, p: f"{c} {_verb(p, 'are', 'is')} largely outside the scene",
    ],
    "bright": [
        lambda c, p: f"strong scatterers concentrate in {c}",
        lambda c, p: f"bright returns cluster in {c}",
        lambda c, p: f"{c} {_verb(p, 'show', 'shows')} strong scatterers",
        lambda c, p: f"the strong scatterers lie in {c}",
    ],
}


def _layout(facts: dict[str, Any], rng: random.Random) -> str:
    cells = facts["surface"]["cells"]
    groups = {
        "water": water_cells(facts, MOSTLY),
        "mixed": water_cells(facts, WATER_PRESENT, MOSTLY),
        "land": water_cells(facts, 0.0, WATER_PRESENT),
        "nodata": [c["cell"] for c in cells if c["valid_fraction"] < NODATA_CELL],
        "bright": [
            c["cell"]
            for c in cells
            if c["valid_fraction"] >= NODATA_CELL and c["bright_fraction"] >= BRIGHT_CELL
        ],
    }
    if len(groups["water"]) == 9:
        head = rng.choice(
            [
                "Every cell of the 3 x 3 grid is mostly open water",
                "Open water fills all nine grid cells",
                "All nine cells are mostly open water",
                "The whole grid, cells 1 to 9, is open water",
            ]
        )
        clauses = [head]
    elif len(groups["land"]) == 9:
        head = rng.choice(
            [
                "Every cell of the 3 x 3 grid is land",
                "Land fills all nine grid cells",
                "All nine cells are land",
                "The whole grid, cells 1 to 9, is land",
            ]
        )
        clauses = [head]
    else:
        clauses = []
        for kind in ("water", "mixed", "land", "nodata"):
            if groups[kind]:
                clauses.append(
                    rng.choice(_LAYOUT_CLAUSES[kind])(_cells(groups[kind], rng), len(groups[kind]) > 1)
                )
    if groups["bright"]:
        clauses.append(
            rng.choice(_LAYOUT_CLAUSES["bright"])(_cells(groups["bright"], rng), len(groups["bright"]) > 1)
        )
    return _cap("; ".join(clauses)) + "."


def _boundary(facts: dict[str, Any], rng: random.Random) -> str | None:
    if not has_boundary(facts):
        return None
    wcl, lcl = water_cells(facts, MOSTLY), water_cells(facts, 0.0, MOSTLY)
    wc, lc = _cells(wcl, rng), _cells(lcl, rng)
    wa, la = _verb(len(wcl) > 1, "are", "is"), _verb(len(lcl) > 1, "are", "is")
    return rng.choice(
        [
            f"A land/water boundary crosses the chip: {wc} {wa} mostly water while {lc} {la} mostly land.",
            f"There is a land/water boundary: water dominates {wc}, whereas land dominates {lc}.",
            f"Land meets water inside the chip; {wc} {wa} mainly water; {lc} {la} mainly land.",
            f"A shoreline runs through the chip: water dominates {wc} while land dominates {lc}.",
            f"{_cap(wc)} {wa} mostly open water while {lc} {la} mostly land, so the chip holds a land/water boundary.",
        ]
    )


def _buildings(facts: dict[str, Any], rng: random.Random) -> str:
    s = facts["surface"]
    b = s["bright_fraction"]
    bp = format_percent(b)
    bright = [
        c["cell"]
        for c in s["cells"]
        if c["valid_fraction"] >= NODATA_CELL and c["bright_fraction"] >= BRIGHT_CELL
    ]
    if b <= 0.0:
        return rng.choice(
            [
                "No strong scatterers typical of built structures occur in the chip.",
                "The chip has no strong scatterers of the kind typical of built structures.",
                "There are no strong scatterers typical of built structures.",
                "Without strong scatterers, the chip shows none of the backscatter typical of built structures.",
            ]
        )
    where = ""
    if bright:
        where = rng.choice([", concentrated in ", ", chiefly in ", ", in "]) + _cells(bright, rng)
    if b < BUILDINGS_RARE and not bright:
        return rng.choice(
            [
                f"Strong scatterers typical of built structures are rare: they make up {bp} of the pixels.",
                f"Strong scatterers of the kind typical of built structures make up {bp} of the pixels.",
                f"Backscatter as strong as that of built structures is rare, at {bp} of the pixels.",
                f"Strong scatterers typical of built structures are rare ({bp} of the pixels).",
            ]
        )
    return rng.choice(
        [
            f"Strong scatterers typical of built structures make up {bp} of the pixels{where}.",
            f"{_cap(bp)} of the pixels are strong scatterers, the backscatter typical of built structures{where}.",
            f"Strong backscatter typical of built structures comes from {bp} of the pixels{where}.",
            f"The backscatter is strong, as typical of built structures, in {bp} of the pixels{where}.",
        ]
    )


def _water(facts: dict[str, Any], rng: random.Random) -> str:
    s = facts["surface"]
    w = s["water_fraction"]
    if w <= 0.0:
        return rng.choice(
            [
                "The chip holds no open water.",
                "There is no open water in the chip.",
                "No pixel of the chip is dark and smooth enough to be open water.",
                "Open water is absent from the chip.",
            ]
        )
    wp = format_percent(w)
    mostly, some = water_cells(facts, MOSTLY), water_cells(facts, WATER_PRESENT)
    nvalid = sum(1 for c in s["cells"] if c["valid_fraction"] >= NODATA_CELL)
    if mostly and len(mostly) == nvalid:
        where = rng.choice(
            [", dominating every grid cell", ", across the whole chip", ", in every grid cell"]
        )
    elif mostly:
        where = rng.choice([", mostly in ", ", mainly in "]) + _cells(mostly, rng)
    elif some:
        where = rng.choice([", spread over ", ", in "]) + _cells(some, rng)
    else:
        where = ""
    return rng.choice(
        [
            f"Open water covers {wp} of the valid area{where}.",
            f"Smooth open water makes up {wp} of the valid pixels{where}.",
            f"The water surface takes up {wp} of the valid pixels{where}.",
            f"{_cap(wp)} of the valid pixels are dark, smooth open water{where}.",
        ]
    )


def keys_of_objects(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(class key, the first label of that key) for the labelled objects, sorted by key."""
    seen: dict[str, str] = {}
    for o in facts.get("objects") or []:
        seen.setdefault(canonical_label(o["label"]), o["label"])
    return sorted(seen.items())


def _targets(facts: dict[str, Any], rng: random.Random) -> str:
    objects = facts.get("objects") or []
    sentences: list[str] = []
    if objects:
        for key, label in keys_of_objects(facts):
            ts = targets_for(facts, key)
            noun = label_words(label)
            n, c = len(ts), _cells(cells_of(ts), rng)
            many = len(cells_of(ts)) > 1
            if n == 1:
                one = rng.choice(["one", "1", "a single"])
                sentences.append(
                    rng.choice(
                        [
                            f"{_cap(one) if one != '1' else 'One'} labelled {noun} lies in {c}.",
                            f"There is {one} labelled {noun}, in {c}.",
                            f"The labels mark a single {noun}, located in {c}.",
                            f"{_cap(c)} {_verb(many, 'hold', 'holds')} the only labelled {noun}.",
                        ]
                    )
                )
            else:
                k = _count(n, rng)
                nouns = plural(noun)
                sentences.append(
                    rng.choice(
                        [
                            f"{_cap(k)} labelled {nouns} lie in {c}.",
                            f"There are {k} labelled {nouns} in {c}.",
                            f"The labels mark {k} {nouns}, located in {c}.",
                            f"{_cap(c)} {_verb(many, 'hold', 'holds')} {k} labelled {nouns}.",
                        ]
                    )
                )
            known = [float(t["length_m"]) for t in ts if t.get("length_m") is not None]
            sentences += _length_sentence(known, n, rng)
        return " ".join(sentences)
    dets = (facts.get("detections") or {}).get("items", [])
    n = len(dets)
    if n == 0:
        return rng.choice(
            [
                "No bright point targets are detected.",
                "The CFAR detector finds no bright point targets.",
                "There are no bright point targets in the chip.",
                "The chip holds no bright point targets.",
            ]
        )
    cl = cells_of(dets)
    c, many = _cells(cl, rng), len(cl) > 1
    if n == 1:
        sentences.append(
            rng.choice(
                [
                    f"One bright point target stands out in {c}.",
                    f"The CFAR detector finds a single bright point target, in {c}.",
                    f"There is one bright point target, located in {c}.",
                    f"{_cap(c)} {_verb(many, 'hold', 'holds')} a single bright point target.",
                ]
            )
        )
    else:
        k = _count(n, rng)
        sentences.append(
            rng.choice(
                [
                    f"{_cap(k)} bright point targets stand out in {c}.",
                    f"The CFAR detector finds {k} bright point targets in {c}.",
                    f"There are {k} bright point targets, located in {c}.",
                    f"{_cap(c)} {_verb(many, 'hold', 'holds')} {k} bright point targets.",
                ]
            )
        )
    wet = sum(1 for d in dets if d["on_water"])
    if n == 1:
        sentences.append(
            rng.choice(["It lies on open water.", "It sits on open water."]) if wet else "It lies on land."
        )
    elif wet == n:
        sentences.append(
            rng.choice(
                [
                    "All of them lie on open water.",
                    "Both lie on open water." if n == 2 else "Each lies on open water.",
                ]
            )
        )
    elif wet == 0:
        sentences.append(rng.choice(["All of them lie on land.", "None of them lies on open water."]))
    else:
        words = rng.random() < 0.5
        sentences.append(
            f"{_cap(_count(wet, rng, words))} of them lie on open water and {_count(n - wet, rng, words)} on land."
        )
    known = [float(d["length_m"]) for d in dets if d.get("length_m") is not None]
    sentences += _length_sentence(known, n, rng)
    sentences += _point_sentence(n - len(known), n, rng)
    return " ".join(sentences)


def _point_sentence(unknown: int, n: int, rng: random.Random) -> list[str]:
    """Detections too small to measure (length_m null): point targets of unknown size."""
    if unknown == 0:
        return []
    if n == 1:
        return [
            rng.choice(
                ["It is a point target of unknown size.", "Its size is unknown: it is a point target."]
            )
        ]
    if unknown == n:
        return [rng.choice(["All of them are point targets of unknown size.", "Their sizes are unknown."])]
    if unknown == 1:
        return [
            "The other is a point target of unknown size."
            if n == 2
            else "One is a point target of unknown size."
        ]
    return [f"{_cap(_count(unknown, rng))} of them are point targets of unknown size."]


def _length_sentence(known: list[float], n: int, rng: random.Random) -> list[str]:
    if not known:
        return []
    ls = _lengths(known)
    if n == 1:
        return [rng.choice([f"It is {ls[0]} long.", f"Its length is {ls[0]}.", f"It measures {ls[0]}."])]
    if len(known) < n:
        if len(ls) == 1:
            return [f"The one with a known length measures {ls[0]}."]
        return [f"Those with a known length measure {ls[0]} to {ls[-1]}."]
    if len(set(ls)) == 1:
        return [f"Each is {ls[0]} long."]
    if n <= 3:
        return [rng.choice([f"They are {_join(ls)} long.", f"They measure {_join(ls)}."])]
    return [
        rng.choice(
            [
                f"Their lengths range from {ls[0]} to {ls[-1]}.",
                f"They measure {ls[0]} to {ls[-1]} in length.",
                f"Their lengths lie between {ls[0]} and {ls[-1]}.",
            ]
        )
    ]


def caption_fields(
    facts: dict[str, Any], rng_for: Callable[[str], random.Random], near_place_km: float = NEAR_PLACE_KM
) -> dict[str, str | None]:
    """All caption fields in CAPTION_FIELDS order; `rng_for(field)` gives the seeded Random of a field."""
    return {
        "terrain": _terrain(facts, rng_for("terrain")),
        "functionality": _functionality(facts, rng_for("functionality"), near_place_km),
        "distribution": _distribution(facts, rng_for("distribution")),
        "layout": _layout(facts, rng_for("layout")),
        "boundary": _boundary(facts, rng_for("boundary")),
        "buildings": _buildings(facts, rng_for("buildings")),
        "roads": None,  # the facts name no roads
        "water": _water(facts, rng_for("water")),
        "targets": _targets(facts, rng_for("targets")),
    }


__all__ = ["NEAR_PLACE_KM", "caption_fields", "keys_of_objects"]
