"""Assemble a chip's fact sheet (schemas/facts.schema.json) from the scene, the chip's georeference and
the place, surface, detection and label facts, and validate it against the schema.

The fact sheet is the ONLY source of truth for generated text, so an invalid sheet is an error here,
never a silently written row.
"""

from __future__ import annotations

import math
from datetime import timezone
from typing import Any

import numpy as np

from schemas import validate
from triplet_builder.record import Georef, SceneRef, Window

FACTS_VERSION = "1.0"
_NORTH_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring"}
_NORTH_SEASONS |= {6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}
_SOUTH_OF = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}


def season_of(month: int, lat: float) -> str:
    """Meteorological season (DJF winter, MAM spring, JJA summer, SON autumn in the north; swapped
    in the southern hemisphere, lat < 0)."""
    if not 1 <= month <= 12:
        raise ValueError(f"season_of: month must be 1..12, got {month}")
    north = _NORTH_SEASONS[month]
    return north if lat >= 0 else _SOUTH_OF[north]


def validate_facts(facts: dict[str, Any]) -> None:
    """Raise ValueError naming the first failing path (e.g. '$.surface.cells[3].water_fraction')."""
    try:
        validate("facts", facts)
    except ValueError as e:
        raise ValueError(str(e).replace("facts invalid at", "fact sheet invalid at", 1)) from None


def json_safe(v: Any) -> Any:
    """Recursively turn numpy scalars / arrays and tuples into plain JSON values; NaN/inf -> None."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _orbit(direction: str | None) -> str | None:
    if direction is None:
        return None
    d = direction.strip().lower()
    if d in ("ascending", "descending"):
        return d
    return {"asc": "ascending", "a": "ascending", "desc": "descending", "d": "descending"}.get(d)


def build_fact_sheet(
    *,
    scene: SceneRef,
    window: Window,
    georef: Georef,
    db: np.ndarray,
    valid: np.ndarray,
    place: dict[str, Any] | None,
    surface: dict[str, Any],
    detections: list[dict[str, Any]],
    detector: dict[str, Any],
    objects: list[dict[str, Any]],
) -> dict[str, Any]:
    """The whole fact sheet of one chip, validated against schemas/facts.schema.json.

    db is the (P, H, W) dB chip and valid its (H, W) mask; H, W must equal the window's output size.
    """
    if db.ndim != 3 or db.shape[1:] != valid.shape:
        raise ValueError(
            f"{scene.scene_id}: db must be (P, H, W) and valid (H, W); got {db.shape}, {valid.shape}"
        )
    h, w = valid.shape
    if (w, h) != (window.out_width, window.out_height):
        raise ValueError(
            f"{scene.scene_id}: chip is {w} x {h} px but the window says {window.out_width} x {window.out_height}"
        )
    acquired = scene.acquired
    if acquired.tzinfo is not None:
        acquired = acquired.astimezone(timezone.utc)
    px = float(georef.pixel_size_m)
    facts: dict[str, Any] = {
        "version": FACTS_VERSION,
        "chip": {
            "width_px": int(w),
            "height_px": int(h),
            "pixel_size_m": round(px, 2),
            "width_m": round(w * px, 1),
            "height_m": round(h * px, 1),
        },
        "acquisition": {
            "sensor": scene.sensor,
            "mode": scene.mode,
            "date": acquired.date().isoformat(),
            "time_utc": acquired.strftime("%H:%M:%S"),
            "year": int(acquired.year),
            "season": season_of(acquired.month, georef.centre_lat),
            "orbit_direction": _orbit(scene.orbit_direction),
            "polarisations": list(scene.polarisations),
            "backscatter": scene.backscatter.value,
            "backscatter_source": scene.backscatter_source,
        },
        "location": {
            "centre_lon": round(float(georef.centre_lon), 6),
            "centre_lat": round(float(georef.centre_lat), 6),
            "grid_cell": georef.grid_cell,
        },
        "place": place,
        "surface": surface,
        "detections": {"detector": detector, "items": list(detections)},
        "objects": list(objects),
    }
    facts = json_safe(facts)
    validate_facts(facts)
    return facts
