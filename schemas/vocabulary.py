"""The controlled vocabularies of the fact sheet, shared by the builder (annotation stages, text, the
consistency checker) and the trainer: land-cover legends, object classes and OpenStreetMap features.

Land cover keeps each product's OWN legend names (a caption says "cropland" for WorldCover and "crops"
for Dynamic World, as the product does); object classes are normalised to `OBJECT_CLASSES` with the
source's own class kept beside them; OSM features are the names of `OSM_FEATURES`, each defined by the
tag rules of triplet_builder/sources/osm.py (documented in README.md).
"""

from __future__ import annotations

import re
from types import MappingProxyType

# ESA WorldCover 10 m v100 (2020) / v200 (2021): pixel value -> class name (the product's legend,
# lower-cased); 0 is no data. https://esa-worldcover.org/en/data-access
WORLDCOVER_LEGEND: MappingProxyType[int, str] = MappingProxyType(
    {
        10: "tree cover",
        20: "shrubland",
        30: "grassland",
        40: "cropland",
        50: "built-up",
        60: "bare / sparse vegetation",
        70: "snow and ice",
        80: "permanent water bodies",
        90: "herbaceous wetland",
        95: "mangroves",
        100: "moss and lichen",
    }
)
WORLDCOVER_NODATA = 0
WORLDCOVER_VERSIONS: MappingProxyType[int, str] = MappingProxyType({2020: "v100", 2021: "v200"})

# Google Dynamic World V1 `label` band: value -> class name (the product's names, underscores as spaces).
DYNAMIC_WORLD_LEGEND: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "water",
        1: "trees",
        2: "grass",
        3: "flooded vegetation",
        4: "crops",
        5: "shrub and scrub",
        6: "built",
        7: "bare",
        8: "snow and ice",
    }
)

LAND_COVER_PRODUCTS: MappingProxyType[str, MappingProxyType[int, str]] = MappingProxyType(
    {"esa-worldcover": WORLDCOVER_LEGEND, "dynamic-world": DYNAMIC_WORLD_LEGEND}
)

# Object classes of labelled objects (facts `objects[].class`); `other` holds what maps to none.
OBJECT_CLASSES: tuple[str, ...] = (
    "ship",
    "aircraft",
    "storage tank",
    "bridge",
    "wind turbine",
    "platform",
    "vehicle",
    "building",
    "other",
)
# source class (lower-cased, separators as spaces) -> vocabulary class
_OBJECT_SYNONYMS: dict[str, str] = {
    "ship": "ship",
    "ships": "ship",
    "vessel": "ship",
    "boat": "ship",
    "fishing": "ship",
    "fishing vessel": "ship",
    "non fishing": "ship",
    "cargo": "ship",
    "tanker": "ship",
    "container ship": "ship",
    "aircraft": "aircraft",
    "airplane": "aircraft",
    "aeroplane": "aircraft",
    "plane": "aircraft",
    "planes": "aircraft",
    "storage tank": "storage tank",
    "storage tanks": "storage tank",
    "storagetank": "storage tank",
    "oil tank": "storage tank",
    "tank": "storage tank",
    "bridge": "bridge",
    "bridges": "bridge",
    "wind turbine": "wind turbine",
    "windturbine": "wind turbine",
    "wind mill": "wind turbine",
    "windmill": "wind turbine",
    "platform": "platform",
    "offshore platform": "platform",
    "oil platform": "platform",
    "infrastructure": "platform",
    "vehicle": "vehicle",
    "car": "vehicle",
    "truck": "vehicle",
    "building": "building",
    "buildings": "building",
}


def normalise_object_class(source_class: object) -> str:
    """The vocabulary class of a label file's class value (`other` when it maps to none)."""
    if source_class is None:
        return "other"
    key = re.sub(r"[\s_\-]+", " ", str(source_class).strip().lower())
    if key in _OBJECT_SYNONYMS:
        return _OBJECT_SYNONYMS[key]
    if key.endswith("s") and key[:-1] in _OBJECT_SYNONYMS:
        return _OBJECT_SYNONYMS[key[:-1]]
    return "other"


# OpenStreetMap features of the `osm` fact section (triplet_builder/sources/osm.py holds their tag rules).
# kind: point = counted; line = counted and measured (length_m); area = counted and measured (area_m2).
OSM_FEATURES: MappingProxyType[str, str] = MappingProxyType(
    {
        "port": "area",  # landuse=port, harbour=* areas / nodes
        "pier": "line",  # man_made=pier
        "breakwater": "line",  # man_made=breakwater, man_made=groyne
        "airport": "area",  # aeroway=aerodrome
        "runway": "line",  # aeroway=runway
        "taxiway": "line",  # aeroway=taxiway
        "apron": "area",  # aeroway=apron
        "bridge": "line",  # bridge=yes on a highway / railway way, man_made=bridge
        "road": "line",  # highway=motorway..residential (not footway / path / track)
        "railway": "line",  # railway=rail
        "building": "area",  # building=*
        "industrial area": "area",  # landuse=industrial
        "residential area": "area",  # landuse=residential
        "farmland": "area",  # landuse=farmland
        "storage tank": "point",  # man_made=storage_tank
        "wind turbine": "point",  # power=generator + generator:source=wind
        "offshore platform": "point",  # man_made=offshore_platform
    }
)

__all__ = [
    "DYNAMIC_WORLD_LEGEND",
    "LAND_COVER_PRODUCTS",
    "OBJECT_CLASSES",
    "OSM_FEATURES",
    "WORLDCOVER_LEGEND",
    "WORLDCOVER_NODATA",
    "WORLDCOVER_VERSIONS",
    "normalise_object_class",
]
