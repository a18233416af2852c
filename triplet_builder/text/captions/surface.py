"""Caption fields about the chip and its surface: terrain (acquisition, place, land cover), distribution
(backscatter statistics, land cover per cell, no data), layout (water / land / no-data cells), boundary,
water and buildings.

Each fact is stated in ONE field: the water share in `water` only, the water / land cells in `layout`
only, the strong-scatterer cells in `buildings` only; `boundary` says that land meets water without
repeating the cells. Land-cover sentences name the product and its year and the classes by the
product's own legend names (schemas/vocabulary.py); without `ext.land_cover` nothing is said about
land cover.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from triplet_builder.text.captions import words as w
from triplet_builder.text.consistency import MOSTLY, NODATA_CELL, WATER_PRESENT, has_boundary, water_cells

BRIGHT_CELL = 0.1  # cells named as holding strong scatterers
BUILDINGS_RARE = 0.02  # below this bright fraction strong scatterers are "rare"
LAND_COVER_MAIN = 0.10  # land-cover classes named in the terrain field: at least this share ...
LAND_COVER_NAMED = 3  # ... and at most this many
LAND_COVER_CELLS_MIN_VALID = 0.5  # a cell's dominant land cover is named when the map covers this much of it


def land_cover_source(lc: dict[str, Any]) -> str:
    """'ESA WorldCover 2021' / 'Dynamic World (2021-01-01 to 2021-12-31)'."""
    if lc["product"] == "esa-worldcover":
        return "ESA WorldCover" + (f" {lc['year']}" if lc.get("year") else "")
    dr = lc.get("date_range")
    return "Dynamic World" + (f" ({dr[0]} to {dr[1]})" if dr else "")


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
        phrase = f"{w.num(d, 1 if d < 10 else 0)} km {w.DIRECTION_WORDS[place['direction']]} of {full}"
    if rng.random() < 0.3:
        phrase += f" ({coords})"
    return phrase


def _acquisition(facts: dict[str, Any], rng: random.Random) -> str:
    acq, chip = facts["acquisition"], facts["chip"]
    sensor = acq["sensor"] + (f" {acq['mode']}" if acq.get("mode") and rng.random() < 0.5 else "")
    pols = list(acq.get("polarisations") or [])
    pol_text = ""
    if pols:
        pol_text = rng.choice(
            [f"{'/'.join(pols)} polarisation", f"{w.join(pols)} polarisation{'s' if len(pols) > 1 else ''}"]
        )
    bs = acq.get("backscatter")
    bs_text = f"{bs} backscatter" if bs and bs != "unknown" else ""
    pols_bs = ", ".join(t for t in (pol_text, bs_text) if t) or "SAR backscatter"
    when = w.date_text(date.fromisoformat(acq["date"]), rng)
    if acq.get("season"):
        when += rng.choice([f" in {acq['season']}", f" ({acq['season']})"])
    if acq.get("orbit_direction"):
        orbit = acq["orbit_direction"]
        when += rng.choice([f" on {w.article(orbit)} pass", f" from {w.article(orbit)} orbit"])
    wm, hm = chip["width_m"], chip["height_m"]
    mw, mh = (w.num(wm, 0), w.num(hm, 0)) if min(wm, hm) >= 100 else (w.num(wm), w.num(hm))
    size = rng.choice(
        [f"{mw} m × {mh} m", f"{w.num(wm / 1000, 2)} km × {w.num(hm / 1000, 2)} km", f"{mw} by {mh} m"]
    )
    ps = w.num(chip["pixel_size_m"], 2)
    if "pixel_size_x_m" in chip:  # the axes differ (e.g. degree pixels): state both
        ps = f"{w.num(chip['pixel_size_x_m'], 2)} m × {w.num(chip['pixel_size_y_m'], 2)}"
    pixels = rng.choice(
        [
            f"{chip['width_px']} × {chip['height_px']} pixels of {ps} m",
            f"{chip['width_px']} by {chip['height_px']} pixels at {ps} m per pixel",
        ]
    )
    v = {"sensor": sensor, "pols_bs": pols_bs, "when": when, "size": size, "pixels": pixels}
    v["place"] = _place_phrase(facts, rng)
    return rng.choice(
        [
            "This {sensor} SAR image ({pols_bs}) was acquired on {when}; it covers {size} ({pixels}) and is centred {place}.",
            "Acquired by {sensor} on {when}, this {size} chip ({pols_bs}, {pixels}) lies {place}.",
            "The chip, {size} in size ({pixels}), lies {place}; {sensor} imaged it on {when} ({pols_bs}).",
            "A {sensor} acquisition of {when} ({pols_bs}) provides this {size} chip ({pixels}), located {place}.",
            "Located {place}, this {size} chip ({pixels}) comes from a {sensor} image ({pols_bs}) acquired on {when}.",
            "Centred {place}, the {size} chip ({pixels}) was recorded by {sensor} on {when} ({pols_bs}).",
        ]
    ).format(**v)


def _land_cover_sentence(lc: dict[str, Any], rng: random.Random) -> str | None:
    fr = sorted(lc["fractions"].items(), key=lambda kv: (-kv[1], kv[0]))
    main = [(c, f) for c, f in fr if f >= LAND_COVER_MAIN][:LAND_COVER_NAMED]
    if not lc.get("dominant") or not main:
        return None
    src = land_cover_source(lc)
    (dom, df), rest = main[0], main[1:]
    tail = w.join([f"{c} ({w.pct(f)})" for c, f in rest])
    if not rest:
        return rng.choice(
            [
                f"{src} maps {w.pct(df)} of the mapped area as {dom}.",
                f"In {src}, {dom} dominates the land cover ({w.pct(df)} of the mapped area).",
                f"The land cover of {src} is chiefly {dom}, {w.pct(df)} of the mapped area.",
            ]
        )
    return rng.choice(
        [
            f"In {src}, {dom} dominates the land cover ({w.pct(df)} of the mapped area), followed by {tail}.",
            f"{src} maps the chip chiefly as {dom} ({w.pct(df)}), with {tail}.",
            f"By {src}, the land cover is {dom} ({w.pct(df)}) ahead of {tail}.",
            f"The dominant {src} class is {dom} ({w.pct(df)} of the mapped area); {tail} follow.",
        ]
    )


def terrain(facts: dict[str, Any], rng: random.Random) -> str:
    """Acquisition, size and place; the land cover when `ext.land_cover` is present."""
    parts = [_acquisition(facts, rng)]
    lc = (facts.get("ext") or {}).get("land_cover")
    if lc:
        s = _land_cover_sentence(lc, rng)
        parts += [s] if s else []
    return " ".join(parts)


def _cell_land_cover(lc: dict[str, Any], rng: random.Random) -> str | None:
    groups: dict[str, list[int]] = {}
    for c in lc.get("cells") or []:
        if c.get("dominant") and c["valid_fraction"] >= LAND_COVER_CELLS_MIN_VALID:
            groups.setdefault(c["dominant"], []).append(int(c["cell"]))
    if not groups:
        return None
    src = land_cover_source(lc)
    if len(groups) == 1:
        (cls,) = groups
        if len(groups[cls]) == 9:
            return rng.choice(
                [
                    f"In {src}, {cls} dominates every grid cell.",
                    f"{w.cap(cls)} leads in all nine cells ({src}).",
                ]
            )
    items = sorted(groups.items(), key=lambda kv: kv[1])
    clauses = [f"{cls} in {w.cells(cl, rng)}" for cls, cl in items]
    return rng.choice(
        [
            f"Per grid cell, the dominant {src} class is {w.join(clauses)}.",
            f"{src} has {w.join(clauses)} as the leading class per cell.",
            f"Cell by cell, {src} is led by {w.join(clauses)}.",
        ]
    )


def distribution(facts: dict[str, Any], rng: random.Random) -> str:
    """Backscatter statistics, land cover per cell (ext.land_cover) and the no-data share."""
    s = facts["surface"]
    mean, std = w.num(s["mean_db"]), w.num(s["std_db"])
    parts = [
        rng.choice(
            [
                f"The mean backscatter is {mean} dB with a standard deviation of {std} dB.",
                f"Backscatter averages {mean} dB (standard deviation {std} dB).",
                f"Across the chip, backscatter has a mean of {mean} dB and a spread of {std} dB.",
                f"Pixel values average {mean} dB and vary with a standard deviation of {std} dB.",
                f"A mean of {mean} dB and a standard deviation of {std} dB describe the backscatter.",
            ]
        )
    ]
    lc = (facts.get("ext") or {}).get("land_cover")
    if lc:
        c = _cell_land_cover(lc, rng)
        parts += [c] if c else []
    if s["valid_fraction"] < 0.98:
        nd = w.pct(1.0 - s["valid_fraction"])
        parts.append(
            rng.choice(
                [
                    f"{w.cap(nd)} of the chip lies outside the scene and holds no data.",
                    f"No data covers {nd} of the chip, outside the scene footprint.",
                    f"The scene footprint leaves {nd} of the chip without data.",
                    f"{w.cap(nd)} of the pixels are no-data pixels outside the scene.",
                ]
            )
        )
    return " ".join(parts)


def _layout_clause(kind: str, c: str, n: int, rng: random.Random) -> str:
    a = lambda sg, pl: w.agree(n, sg, pl)  # noqa: E731
    options = {
        "water": [f"open water fills {c}", f"{c} {a('is', 'are')} mostly open water", f"the open water lies in {c}",
                  f"{c} {a('holds', 'hold')} mainly open water", f"water dominates {c}"],
        "mixed": [f"{c} {a('mixes', 'mix')} land and water", f"{c} {a('holds', 'hold')} both land and water",
                  f"land and water share {c}", f"{c} {a('is', 'are')} part land, part water"],
        "land": [f"land covers {c}", f"{c} {a('is', 'are')} land", f"land fills {c}", f"{c} {a('shows', 'show')} land",
                 f"{c} {a('is', 'are')} dry land"],
        "nodata": [f"{c} {a('lies', 'lie')} mostly outside the scene", f"{c} {a('holds', 'hold')} mostly no-data pixels",
                   f"most of {c} {a('falls', 'fall')} outside the scene", f"{c} {a('is', 'are')} largely outside the scene"],
    }  # fmt: skip
    return rng.choice(options[kind])


def layout(facts: dict[str, Any], rng: random.Random) -> str:
    """Which cells are water, mixed, land or mostly outside the scene."""
    groups = {
        "water": water_cells(facts, MOSTLY),
        "mixed": water_cells(facts, WATER_PRESENT, MOSTLY),
        "land": water_cells(facts, 0.0, WATER_PRESENT),
        "nodata": [c["cell"] for c in facts["surface"]["cells"] if c["valid_fraction"] < NODATA_CELL],
    }
    if len(groups["water"]) == 9:
        return w.pick(
            rng,
            ["Every cell of the 3 x 3 grid is ", "All nine grid cells are ", "Each of the nine cells is "],
            ["mostly open water", "mainly open water", "dominated by open water"],
            [".", ", cells 1 to 9 alike."],
        )
    if len(groups["land"]) == 9:
        return w.pick(
            rng,
            ["Every cell of the 3 x 3 grid is ", "All nine grid cells are ", "Each of the nine cells is "],
            ["land", "dry land", "land without open water"],
            [".", ", cells 1 to 9 alike."],
        )
    clauses = [
        _layout_clause(kind, w.cells(groups[kind], rng), len(groups[kind]), rng)
        for kind in ("water", "mixed", "land", "nodata")
        if groups[kind]
    ]
    return w.cap("; ".join(clauses)) + "."


def boundary(facts: dict[str, Any], rng: random.Random) -> str | None:
    """That land meets water (the cells are the layout field's)."""
    if not has_boundary(facts):
        return None
    return w.pick(
        rng,
        ["A land/water boundary ", "A shoreline ", "The land/water boundary "],
        ["crosses the chip", "runs through the chip", "divides the chip", "cuts across the image"],
        [".", ", separating the mostly-water cells from the mostly-land ones."],
    )


def water(facts: dict[str, Any], rng: random.Random) -> str:
    """The open-water share (the cells are the layout field's)."""
    wf = facts["surface"]["water_fraction"]
    if wf <= 0.0:
        return w.pick(
            rng,
            [
                "The chip holds no open water",
                "There is no open water in the chip",
                "Open water is absent",
                "No pixel is dark and smooth enough to be open water",
            ],
            [".", " at all.", " here."],
        )
    wp = w.pct(wf)
    return rng.choice(
        [
            f"Open water covers {wp} of the valid area.",
            f"Smooth open water makes up {wp} of the valid pixels.",
            f"The water surface takes up {wp} of the valid pixels.",
            f"{w.cap(wp)} of the valid pixels are dark, smooth open water.",
            f"Dark, calm open water accounts for {wp} of the valid area.",
            f"Of the valid area, {wp} is open water.",
        ]
    )


def _osm_buildings(osm: dict[str, Any], rng: random.Random) -> str | None:
    b = (osm.get("features") or {}).get("building")
    share = osm.get("built_up_fraction")
    if b:
        n = int(b["count"])
        noun = w.agree(n, "building", "buildings")
        k = w.count(n, rng)
        cover = f", covering {w.pct(float(share))} of the chip" if share is not None else ""
        return rng.choice(
            [
                f"OpenStreetMap maps {k} {noun} here{cover}.",
                f"{w.cap(k)} {noun} {w.agree(n, 'is', 'are')} mapped in OpenStreetMap{cover}.",
            ]
        )
    if "building" in (osm.get("queried") or []):
        return rng.choice(
            ["No building is mapped in OpenStreetMap here.", "OpenStreetMap maps no building here."]
        )
    return None


def buildings(facts: dict[str, Any], rng: random.Random) -> str:
    """Strong scatterers (share and cells) and the OSM buildings of `ext.osm`."""
    s = facts["surface"]
    b = s["bright_fraction"]
    bp = w.pct(b)
    bright = [
        c["cell"]
        for c in s["cells"]
        if c["valid_fraction"] >= NODATA_CELL and c["bright_fraction"] >= BRIGHT_CELL
    ]
    if b <= 0.0:
        text = w.pick(
            rng,
            [
                "No strong scatterers typical of built structures occur",
                "There are no strong scatterers of the kind typical of built structures",
                "Strong scatterers typical of built structures are absent",
            ],
            [".", " in the chip.", " here."],
        )
    elif b < BUILDINGS_RARE and not bright:
        text = rng.choice(
            [
                f"Strong scatterers typical of built structures are rare: they make up {bp} of the pixels.",
                f"Strong scatterers of the kind typical of built structures make up {bp} of the pixels.",
                f"Backscatter as strong as that of built structures is rare, at {bp} of the pixels.",
                f"Strong scatterers typical of built structures are rare ({bp} of the pixels).",
            ]
        )
    else:
        where = (
            (rng.choice([", concentrated in ", ", chiefly in ", ", in "]) + w.cells(bright, rng))
            if bright
            else ""
        )
        text = rng.choice(
            [
                f"Strong scatterers typical of built structures make up {bp} of the pixels{where}.",
                f"{w.cap(bp)} of the pixels are strong scatterers, the backscatter typical of built structures{where}.",
                f"Strong backscatter typical of built structures comes from {bp} of the pixels{where}.",
                f"The backscatter is strong, as typical of built structures, in {bp} of the pixels{where}.",
            ]
        )
    osm = (facts.get("ext") or {}).get("osm")
    extra = _osm_buildings(osm, rng) if osm else None
    return f"{text} {extra}" if extra else text


__all__ = ["boundary", "buildings", "distribution", "land_cover_source", "layout", "terrain", "water"]
