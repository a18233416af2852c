"""The functions of the area a chip shows (port, airport, industrial area ...), derived from its fact
sheet by documented rules, each function returned with the facts that support it.

Principle: land-use functions (port, airport, industrial / residential / urban / agricultural area,
wetland, forest, wind farm, open water) come from the map sources (`ext.land_cover`, `ext.osm`) and the
surface, which describe the LAND; labelled objects say what the objects are, so they give only the use
of the waters and of the site by vessels and aircraft (shipping, aviation). A few labelled storage tanks
do not make an industrial area, nor two ships a port.

Why rules and not a model: a caption or a scene-type answer may name a function only when the facts
imply it, and a checker must be able to say which fact does. Each rule below names the fact sections it
needs (`ext.land_cover`, `ext.osm`, labelled `objects`, `surface`, `detections`); without them the rule
derives nothing (never a guess). Thresholds are the named constants below; README.md has the table.

Land-cover fractions are shares of the map's VALID pixels; a land-cover rule applies only when the map
covers at least `LAND_COVER_MIN_VALID` of the chip. OSM area shares are `area_m2` / the chip's ground
area (`chip.width_m * chip.height_m`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from schemas.vocabulary import normalise_object_class

# -- thresholds -----------------------------------------------------------------------------------
LAND_COVER_MIN_VALID = 0.5  # land-cover rules need the map to cover this share of the chip
URBAN_MIN_LAND_COVER = 0.30  # built-up (WorldCover) / built (Dynamic World) share -> urban area
URBAN_MIN_OSM_BUILT = 0.15  # OSM building footprint share of the chip -> urban area
AGRICULTURE_MIN = 0.30  # cropland / crops share, or OSM farmland area share -> agricultural area
WETLAND_MIN = 0.30  # herbaceous wetland + mangroves / flooded vegetation share -> wetland
FOREST_MIN = 0.50  # tree cover / trees share -> forest
OPEN_WATER_MIN = 0.80  # surface water fraction -> open water (scene type)
INDUSTRIAL_MIN_SHARE = 0.10  # OSM industrial area share of the chip -> industrial area
RESIDENTIAL_MIN_SHARE = 0.10  # OSM residential area share of the chip -> residential area
STORAGE_TANKS_MIN = 3  # OSM storage tanks -> industrial area
WIND_TURBINES_MIN = 3  # OSM wind turbines -> wind farm
RUNWAY_MIN_M = 800.0  # OSM runway length inside the chip -> airport
PORT_MIN_QUAY_M = 300.0  # OSM pier + breakwater length, with open water in the chip -> port
PORT_MIN_WATER = 0.1  # ... at least this surface water fraction
NEAR_PLACE_KM = 25.0  # CFAR detections on water this close to the named place -> shipping

_BUILT = ("built-up", "built")
_CROPS = ("cropland", "crops")
_WETLAND = ("herbaceous wetland", "mangroves", "flooded vegetation")
_TREES = ("tree cover", "trees")

# function -> the words that name it in text (checked by `check_functionality`)
FUNCTION_PATTERNS: dict[str, str] = {
    "port": r"\b(?:sea)?ports?\b|\bharbou?rs?\b",
    "airport": r"\bairports?\b|\bairfields?\b|\baerodromes?\b",
    "industrial area": r"\bindustr(?:ial|y)\b",
    "residential area": r"\bresidential\b|\bhousing\b",
    "urban area": r"\burban\b|\bcity\b|\btowns?\b|\bsettlements?\b|\bbuilt-up areas?\b",
    "agricultural area": r"\bagricultur\w*|\bfarming\b|\bfarmland\b|\bcrop(?:land|s)?\b",
    "wetland": r"\bwetlands?\b|\bmarsh\w*|\bmangroves?\b",
    "forest": r"\bforest\w*|\bwoodlands?\b",
    "wind farm": r"\bwind\s+(?:farm|park)s?\b",
    "open water": r"\bopen[- ]water\s+area\b",
    "shipping": r"\bvessel\s+traffic\b|\bused\s+by\s+vessels\b|\bvessels\s+use\b|\bshipping\b",
    "aviation": r"\bused\s+by\s+aircraft\b|\baircraft\s+use\b|\bserves\s+aircraft\b|\baviation\b",
}
FUNCTIONS: tuple[str, ...] = tuple(FUNCTION_PATTERNS)
_FUNCTION_RES = tuple((name, re.compile(p, re.I)) for name, p in FUNCTION_PATTERNS.items())
# any function at all: one scan, before the per-function ones (most caption fields name none)
_ANY_FUNCTION_RE = re.compile("|".join(f"(?:{p})" for p in FUNCTION_PATTERNS.values()), re.I)
_NEGATION_RE = re.compile(r"\b(?:no|not|nor|without|neither|none)\b(?:\s+[\w-]+){0,3}\s*$", re.I)


@dataclass(frozen=True)
class Function:
    """A function of the area and the facts that support it (JSON paths with their values)."""

    name: str
    evidence: tuple[str, ...]


def _land_cover(facts: Mapping[str, Any]) -> dict[str, float]:
    lc = (facts.get("ext") or {}).get("land_cover")
    if not lc or float(lc.get("valid_fraction") or 0.0) < LAND_COVER_MIN_VALID:
        return {}
    return {str(k): float(v) for k, v in (lc.get("fractions") or {}).items()}


def _share(lc: dict[str, float], classes: tuple[str, ...]) -> tuple[float, list[str]]:
    present = [c for c in classes if c in lc]
    return sum(lc[c] for c in present), [f"ext.land_cover.fractions.{c} = {lc[c]:.2f}" for c in present]


def _osm(facts: Mapping[str, Any]) -> dict[str, Any]:
    return ((facts.get("ext") or {}).get("osm") or {}).get("features") or {}


def _osm_area_share(facts: Mapping[str, Any], feature: str) -> float:
    area = (_osm(facts).get(feature) or {}).get("area_m2") or 0.0
    chip = facts.get("chip") or {}
    ground = float(chip.get("width_m") or 0.0) * float(chip.get("height_m") or 0.0)
    return float(area) / ground if ground > 0 else 0.0


def object_class(obj: Mapping[str, Any]) -> str:
    """The vocabulary class of a labelled object: its `class`, else its label normalised."""
    return str(obj.get("class") or normalise_object_class(obj.get("label")))


def _labelled(facts: Mapping[str, Any], cls: str) -> int:
    return sum(1 for o in facts.get("objects") or [] if object_class(o) == cls)


def _osm_count(facts: Mapping[str, Any], feature: str, minimum: int) -> tuple[bool, list[str]]:
    """An OSM point feature counted at least `minimum` times."""
    n = int((_osm(facts).get(feature) or {}).get("count") or 0)
    return n >= minimum, [f"ext.osm.features.{feature}.count = {n}"]


def derive_functions(facts: Mapping[str, Any], near_place_km: float = NEAR_PLACE_KM) -> list[Function]:
    """The functions the rules derive from `facts`, in `FUNCTIONS` order (see the module docstring)."""
    osm, lc = _osm(facts), _land_cover(facts)
    found: dict[str, list[str]] = {}
    water = float((facts.get("surface") or {}).get("water_fraction") or 0.0)
    # port: OSM port; or OSM piers / breakwaters >= PORT_MIN_QUAY_M on a chip with open water
    if "port" in osm:
        found["port"] = [f"ext.osm.features.port.count = {osm['port']['count']}"]
    else:
        quay = sum(float((osm.get(f) or {}).get("length_m") or 0.0) for f in ("pier", "breakwater"))
        if quay >= PORT_MIN_QUAY_M and water >= PORT_MIN_WATER:
            found["port"] = [
                f"ext.osm pier + breakwater length_m = {quay:.0f}",
                f"surface.water_fraction = {water:.2f}",
            ]
    # airport: OSM airport; or OSM runways >= RUNWAY_MIN_M
    if "airport" in osm:
        found["airport"] = [f"ext.osm.features.airport.count = {osm['airport']['count']}"]
    elif float((osm.get("runway") or {}).get("length_m") or 0.0) >= RUNWAY_MIN_M:
        found["airport"] = [f"ext.osm.features.runway.length_m = {osm['runway']['length_m']:.0f}"]
    # industrial area: OSM industrial share; or OSM storage tanks
    share = _osm_area_share(facts, "industrial area")
    tanks_ok, tanks_ev = _osm_count(facts, "storage tank", STORAGE_TANKS_MIN)
    if share >= INDUSTRIAL_MIN_SHARE:
        found["industrial area"] = [f"ext.osm.features.industrial area share of the chip = {share:.2f}"]
    elif tanks_ok:
        found["industrial area"] = tanks_ev
    share = _osm_area_share(facts, "residential area")
    if share >= RESIDENTIAL_MIN_SHARE:
        found["residential area"] = [f"ext.osm.features.residential area share of the chip = {share:.2f}"]
    # urban area: land-cover built share; or OSM building footprint share
    built, ev = _share(lc, _BUILT)
    osm_built = ((facts.get("ext") or {}).get("osm") or {}).get("built_up_fraction")
    if built >= URBAN_MIN_LAND_COVER:
        found["urban area"] = ev
    elif osm_built is not None and float(osm_built) >= URBAN_MIN_OSM_BUILT:
        found["urban area"] = [f"ext.osm.built_up_fraction = {float(osm_built):.2f}"]
    crops, ev = _share(lc, _CROPS)
    farm = _osm_area_share(facts, "farmland")
    if crops >= AGRICULTURE_MIN:
        found["agricultural area"] = ev
    elif farm >= AGRICULTURE_MIN:
        found["agricultural area"] = [f"ext.osm.features.farmland share of the chip = {farm:.2f}"]
    wet, ev = _share(lc, _WETLAND)
    if wet >= WETLAND_MIN:
        found["wetland"] = ev
    trees, ev = _share(lc, _TREES)
    if trees >= FOREST_MIN:
        found["forest"] = ev
    turbines_ok, ev = _osm_count(facts, "wind turbine", WIND_TURBINES_MIN)
    if turbines_ok:
        found["wind farm"] = ev
    if water >= OPEN_WATER_MIN:
        found["open water"] = [f"surface.water_fraction = {water:.2f}"]
    # shipping: labelled ships; or CFAR detections on water within near_place_km of the named place
    ships = _labelled(facts, "ship")
    place = facts.get("place")
    wet_dets = sum(1 for d in (facts.get("detections") or {}).get("items", []) if d.get("on_water"))
    if ships:
        found["shipping"] = [f"objects of class ship = {ships}"]
    elif wet_dets and place and float(place["distance_km"]) <= near_place_km:
        found["shipping"] = [
            f"detections on water = {wet_dets}",
            f"place.distance_km = {float(place['distance_km']):g} (<= {near_place_km:g})",
        ]
    planes = _labelled(facts, "aircraft")
    if planes:
        found["aviation"] = [f"objects of class aircraft = {planes}"]
    return [Function(name, tuple(found[name])) for name in FUNCTIONS if name in found]


# Scene types by priority: the first derived one names the chip's scene type. Why this order: the most
# specific land use wins (an airport or a port is also built-up, an industrial area also urban); land
# uses come before land covers (wetland, forest) and open water, which any of them may border.
# `shipping` and `aviation` are USES of the waters / the site by vessels and aircraft, not scene types.
SCENE_TYPE_PRIORITY: tuple[str, ...] = (
    "airport",
    "port",
    "industrial area",
    "urban area",
    "residential area",
    "agricultural area",
    "wetland",
    "forest",
    "wind farm",
    "open water",
)


def scene_type(facts: Mapping[str, Any]) -> str | None:
    """The chip's scene type: the derived function first in `SCENE_TYPE_PRIORITY`, or None when the
    rules derive none (never a guess)."""
    derived = {f.name for f in derive_functions(facts)}
    return next((name for name in SCENE_TYPE_PRIORITY if name in derived), None)


def named_function_spans(text: str) -> list[tuple[str, int, int]]:
    """(function, start, end) of each mention of a function in `text`; negated mentions ("no port")
    are skipped."""
    out: list[tuple[str, int, int]] = []
    if _ANY_FUNCTION_RE.search(text) is None:
        return out
    for name, pattern in _FUNCTION_RES:
        for m in pattern.finditer(text):
            if _NEGATION_RE.search(text[max(0, m.start() - 40) : m.start()]):
                continue
            out.append((name, m.start(), m.end()))
    return out


@lru_cache(maxsize=1024)
def _literal_res(strings: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(re.escape(s), re.I) for s in strings if s)


def blank_strings(text: str, strings: Sequence[str]) -> str:
    """`text` with every occurrence of each of `strings` (case-insensitive, one string after the other;
    empty ones skipped) replaced by as many spaces: same length, same offsets."""
    for rx in _literal_res(tuple(strings)):
        text = rx.sub(lambda m: " " * len(m.group(0)), text)
    return text


def named_functions(text: str, mask: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(function, the words that name it) for each function `text` states; negated mentions ("no
    port") and the strings of `mask` (place names: "Port-Saint-Louis") are skipped."""
    text = blank_strings(text, mask)
    return [(name, text[a:b]) for name, a, b in named_function_spans(text)]


def check_functionality(text: str | None, facts: Mapping[str, Any]) -> list[str]:
    """Problems of a functionality text (or a scene-type answer): each function it names that the
    rules do not derive from `facts`."""
    if not text:
        return []
    place = facts.get("place") or {}
    mask = tuple(str(place.get(k) or "") for k in ("name", "admin1", "admin2", "country"))
    # a labelled object named by its source's own class ("2 objects labelled harbor", class `other`) is an
    # object the label file states, not a function claimed of the area
    mask += tuple(str(o.get("label") or "") for o in facts.get("objects") or [] if o.get("class") == "other")
    named = named_functions(text, mask)
    if not named:
        return []
    derived = {f.name for f in derive_functions(facts)}
    out = []
    for name, words in named:
        if name not in derived:
            out.append(f"functionality: '{words}' names the function {name}, which the facts do not support")
    return out


__all__ = [
    "FUNCTIONS",
    "FUNCTION_PATTERNS",
    "SCENE_TYPE_PRIORITY",
    "Function",
    "blank_strings",
    "check_functionality",
    "derive_functions",
    "named_function_spans",
    "named_functions",
    "object_class",
    "scene_type",
]
