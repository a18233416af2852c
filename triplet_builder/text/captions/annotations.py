"""Caption fields from the annotation sections: functionality (the functions derived by
triplet_builder/facts/functionality.py) and roads (ext.osm road / railway lengths and bridges).

Nothing is written without the facts: no `ext.osm` -> roads is null; no derived function -> the
functionality field is null. OSM negatives only for features in `ext.osm.queried`, phrased as "not
mapped in OpenStreetMap" (the map, not the ground, is what the facts know).
"""

from __future__ import annotations

import random
from typing import Any

from triplet_builder.facts.functionality import derive_functions
from triplet_builder.text.captions import words as w

# functions the caption states, with their noun phrase ("open water" is the water field's)
_PHRASES = {
    "port": "port",
    "airport": "airport",
    "industrial area": "industrial area",
    "residential area": "residential area",
    "urban area": "urban area",
    "agricultural area": "agricultural area",
    "wetland": "wetland",
    "forest": "forest",
    "wind farm": "wind farm",
}


def functionality(facts: dict[str, Any], rng: random.Random, near_place_km: float) -> str | None:
    """The derived functions; waters used by vessels and areas used by aircraft as today's sentences."""
    derived = {f.name: f.evidence for f in derive_functions(facts, near_place_km)}
    found = set(derived)
    parts: list[str] = []
    uses = [w.article(p) for name, p in _PHRASES.items() if name in found]
    if uses:
        parts.append(
            rng.choice(
                [
                    f"The area serves as {w.join(uses)}.",
                    f"Functionally, the chip shows {w.join(uses)}.",
                    f"Its land use is that of {w.join(uses)}.",
                    f"The mapped facts identify {w.join(uses)} here.",
                ]
            )
        )
    place = facts.get("place")
    if "shipping" in found:
        near_place = place is not None and place["distance_km"] <= near_place_km
        from_detections = any(e.startswith("detections") for e in derived["shipping"])
        say_near = from_detections or rng.random() < 0.5  # the place is part of the detections' evidence
        near = f" near {place['name']}" if near_place and place and say_near else ""
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
    if "aviation" in found:
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


def _line(
    feature: str, plural_noun: str, f: dict[str, Any] | None, queried: list[str], rng: random.Random
) -> str | None:
    if f:
        length = f.get("length_m")
        if length:
            return rng.choice(
                [
                    f"{w.distance(float(length))} of {plural_noun}",
                    f"{plural_noun} over {w.distance(float(length))}",
                ]
            )
        return f"{w.count(int(f['count']), rng)} {w.agree(int(f['count']), feature, plural_noun)}"
    return None


def roads(facts: dict[str, Any], rng: random.Random) -> str | None:
    """Roads, railways and bridges of ext.osm, with negatives for queried features that are absent."""
    osm = (facts.get("ext") or {}).get("osm")
    if not osm:
        return None
    feats, queried = osm.get("features") or {}, list(osm.get("queried") or [])
    present = [
        s
        for s in (
            _line("road", "roads", feats.get("road"), queried, rng),
            _line("railway", "railways", feats.get("railway"), queried, rng),
            _line("bridge", "bridges", feats.get("bridge"), queried, rng),
        )
        if s
    ]
    absent = [
        n
        for n, p in (("road", "roads"), ("railway", "railways"), ("bridge", "bridges"))
        if n in queried and n not in feats
    ]
    out = []
    if present:
        out.append(
            rng.choice(
                [
                    f"OpenStreetMap maps {w.join(present)} in the chip.",
                    f"The chip holds {w.join(present)} in OpenStreetMap.",
                    f"In OpenStreetMap, the footprint has {w.join(present)}.",
                ]
            )
        )
    if absent:
        names = w.join(
            [
                p
                for n, p in (("road", "roads"), ("railway", "railways"), ("bridge", "bridges"))
                if n in absent
            ],
            "or",
        )
        out.append(
            rng.choice(
                [f"No {names} are mapped in OpenStreetMap here.", f"OpenStreetMap maps no {names} here."]
            )
        )
    return " ".join(out) or None


__all__ = ["functionality", "roads"]
