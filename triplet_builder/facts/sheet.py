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

from schemas import frames, json_schema, validate
from triplet_builder.record import Georef, SceneRef, Window

FACTS_VERSION = "1.0"
# the sections the facts stage writes (every required key but the version); annotation stages add theirs
# under EXT_KEY (`$.ext.<stage name>`), see triplet_builder/stages/annotation.py
CORE_SECTIONS: tuple[str, ...] = tuple(k for k in json_schema("facts")["required"] if k != "version")
EXT_KEY = "ext"
ANISOTROPY_TOLERANCE = 0.01  # pixel sizes per axis are stated when the axes differ by more than this
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


def with_norm_boxes(items: list[dict[str, Any]], width: int, height: int) -> list[dict[str, Any]]:
    """Items with their chip-pixel `bbox` also as `bbox_norm` (normalized, schemas/frames.py, unrounded)
    and their `cell` from it, so every box and cell of the sheet follows the one convention."""
    out = []
    for it in items:
        norm = frames.box_to_norm(it["bbox"], width, height)
        out.append({**it, "bbox_norm": norm, "cell": frames.cell_of_box(norm)})
    return out


def _orbit(direction: str | None) -> str | None:
    if direction is None:
        return None
    d = direction.strip().lower()
    if d in ("ascending", "descending"):
        return d
    return {"asc": "ascending", "a": "ascending", "desc": "descending", "d": "descending"}.get(d)


def chip_size_facts(georef: Georef, width_px: int, height_px: int, scene_id: str = "") -> dict[str, Any]:
    """The fact sheet's "chip": pixels, ground width and height in metres per axis (geodesic, from the
    georeference), the pixel size, and the pixel size per axis where the two axes differ by more than
    1 % (e.g. square degree pixels of a geographic CRS away from the equator)."""
    if georef.width_m is None or georef.height_m is None:
        raise ValueError(
            f"{scene_id}: the georeference has no ground width_m / height_m; run the georeference stage"
        )
    px_x, px_y = georef.width_m / width_px, georef.height_m / height_px
    chip: dict[str, Any] = {
        "width_px": int(width_px),
        "height_px": int(height_px),
        "pixel_size_m": round(float(georef.pixel_size_m), 2),
        "width_m": round(float(georef.width_m), 1),
        "height_m": round(float(georef.height_m), 1),
    }
    if abs(px_x - px_y) > ANISOTROPY_TOLERANCE * max(px_x, px_y):
        chip["pixel_size_x_m"] = round(px_x, 2)
        chip["pixel_size_y_m"] = round(px_y, 2)
    return chip


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
    facts: dict[str, Any] = {
        "version": FACTS_VERSION,
        "chip": chip_size_facts(georef, w, h, scene.scene_id),
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
        "detections": {"detector": detector, "items": with_norm_boxes(list(detections), w, h)},
        "objects": with_norm_boxes(list(objects), w, h),
    }
    facts = json_safe(facts)
    validate_facts(facts)
    return facts
