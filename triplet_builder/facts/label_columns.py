"""Which column of a label file holds what: latitude, longitude, class, length (metres), time and scene /
product id, from the region file's `facts.labels.columns` or recognised by the common names of public
SAR label sets (matched case-insensitively):

- xView3-SAR: `detect_lat`, `detect_lon`, `vessel_length_m`, `scene_id`, class from `is_vessel` /
  `is_fishing`, `confidence`;
- Global Fishing Watch SAR detections: `lat`, `lon`, `length_m`, `timestamp` / `detect_timestamp`,
  `scene_id`, `detect_id`, `score` / `presence_score`;
- the project's own rows and exports: `scene_id`, `acquired`, `label`, `length_m`.

A role with two recognised columns (e.g. both `lat` and `detect_lat`) is ambiguous and an error: name
the one to use in `facts.labels.columns`. A length column is recognised only when its name says metres
(`length` alone does not state its unit: map it explicitly if it is in metres).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("lat", "lon", "class", "length_m", "time", "scene_id")
COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "lat": ("detect_lat", "lat", "latitude"),
    "lon": ("detect_lon", "lon", "lng", "long", "longitude"),
    "class": ("class", "label", "category", "class_name", "object_class", "vessel_class"),
    "length_m": ("vessel_length_m", "length_m", "length_meters", "length_metres"),
    "time": (
        "time",
        "timestamp",
        "datetime",
        "detect_time",
        "detect_timestamp",
        "detection_time",
        "acquired",
        "acquisition_time",
    ),
    "scene_id": ("scene_id", "scene", "product_id", "product_name", "product", "granule_id"),
}
# small attributes copied into a fact's "attributes" (first recognised name wins); never geometry
ATTRIBUTE_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("detect_id", "detection_id", "object_id", "label_id", "id"),
    "confidence": ("confidence",),
    "score": ("score", "presence_score", "detection_score"),
}
XVIEW3_FLAGS = ("is_vessel", "is_fishing")  # xView3's class, read when no class column exists


@dataclass(frozen=True)
class LabelColumns:
    """The resolved column of each role in one label file (None: the file has none)."""

    lat: str | None
    lon: str | None
    klass: str | None
    xview3_flags: tuple[str | None, str | None]  # is_vessel, is_fishing (used when klass is None)
    length_m: str | None
    time: str | None
    scene_id: str | None
    attributes: dict[str, str]  # attribute name -> column


def _find(columns: list[str], name: str) -> str | None:
    lower = {c.lower(): c for c in columns}
    return lower.get(name.lower())


def _recognise(where: str, columns: list[str], role: str) -> str | None:
    found = [c for n in COMMON_NAMES[role] if (c := _find(columns, n))]
    if len(found) > 1:
        raise ValueError(
            f"{where}: columns {found} could all be the {role} column; "
            f"set facts.labels.columns.{role} to the one to use"
        )
    return found[0] if found else None


def resolve_columns(
    where: str, columns: list[str], mapping: Mapping[str, str | None], *, need_latlon: bool
) -> LabelColumns:
    """The column of every role: `mapping` (the region file's names) first, else the common names.

    where names the file in errors; need_latlon: the file has no geometry (a CSV), so lat / lon are
    required. Raises ValueError (one line naming the file and its columns) on a mapped column that is
    missing, an ambiguous role or missing lat / lon."""
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise ValueError(f"{where}: unknown column roles {unknown}; use {list(ROLES)}")
    got: dict[str, str | None] = {}
    for role in ROLES:
        name = mapping.get(role)
        if name is not None:
            col = _find(columns, name)
            if col is None:
                raise ValueError(
                    f"{where}: column {name!r} (facts.labels.columns.{role}) not found; "
                    f"the file's columns are {columns}"
                )
            got[role] = col
        else:
            got[role] = _recognise(where, columns, role)
    if need_latlon and (got["lat"] is None or got["lon"] is None):
        raise ValueError(
            f"{where}: no latitude/longitude columns found (looked for {list(COMMON_NAMES['lat'])} / "
            f"{list(COMMON_NAMES['lon'])}; the file's columns are {columns}); set facts.labels.columns.lat "
            "and .lon, or convert the file to GeoJSON"
        )
    flags: tuple[str | None, str | None] = (None, None)
    if got["class"] is None:
        flags = (_find(columns, XVIEW3_FLAGS[0]), _find(columns, XVIEW3_FLAGS[1]))
        if flags[0] is None:
            flags = (None, None)
    taken = {c for c in (*got.values(), *flags) if c}
    attributes: dict[str, str] = {}
    for attr, names in ATTRIBUTE_NAMES.items():
        col = next((c for n in names if (c := _find(columns, n)) and c not in taken), None)
        if col is not None:
            attributes[attr] = col
    return LabelColumns(
        lat=got["lat"],
        lon=got["lon"],
        klass=got["class"],
        xview3_flags=flags,
        length_m=got["length_m"],
        time=got["time"],
        scene_id=got["scene_id"],
        attributes=attributes,
    )
