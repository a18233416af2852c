"""Caption fields (FUSAR-GEOVL structure) written from a chip's fact sheet alone: the caption side of
the offline writer (text/offline.py).

Each field function takes the fact sheet and a `random.Random` seeded for that field (the writer seeds
one per field, so a change to one field's templates leaves the others' choices alone) and returns the
field's text, or None when the facts say nothing about it. Modules: `words` (wording helpers),
`surface` (terrain, distribution, layout, boundary, water, buildings), `targets`, `annotations`
(functionality and roads from the annotation sections).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from triplet_builder.facts.functionality import NEAR_PLACE_KM
from triplet_builder.text.captions.annotations import functionality, roads
from triplet_builder.text.captions.surface import boundary, buildings, distribution, layout, terrain, water
from triplet_builder.text.captions.targets import keys_of_objects, targets


def caption_fields(
    facts: dict[str, Any], rng_for: Callable[[str], random.Random], near_place_km: float = NEAR_PLACE_KM
) -> dict[str, str | None]:
    """All caption fields in CAPTION_FIELDS order; `rng_for(field)` gives the seeded Random of a field."""
    return {
        "terrain": terrain(facts, rng_for("terrain")),
        "functionality": functionality(facts, rng_for("functionality"), near_place_km),
        "distribution": distribution(facts, rng_for("distribution")),
        "layout": layout(facts, rng_for("layout")),
        "boundary": boundary(facts, rng_for("boundary")),
        "buildings": buildings(facts, rng_for("buildings")),
        "roads": roads(facts, rng_for("roads")),
        "water": water(facts, rng_for("water")),
        "targets": targets(facts, rng_for("targets")),
    }


__all__ = ["NEAR_PLACE_KM", "caption_fields", "keys_of_objects"]
