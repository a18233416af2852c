"""Hand-written fact sheets WITH annotation sections (ext.land_cover, ext.osm, labels), built on the
fixtures of factsheets.py: they follow schemas/facts_ext/*.schema.json and the contract of issue #9
(objects carry a vocabulary `class`; `labels` lists the classes the label file annotates)."""

from __future__ import annotations

from typing import Any

from .factsheets import fact_sheet


def _cells_lc(dominants: list[str | None], valid: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"cell": i + 1, "valid_fraction": valid, "dominant": d, "fractions": {d: 1.0} if d else {}}
        for i, d in enumerate(dominants)
    ]


def port_with_ext() -> dict[str, Any]:
    """Vlissingen (PORT): WorldCover 2021 built-up 45 % / water 35 % / grassland 20 %; OSM: a port, 2.4 km
    of roads, no railway, 120 buildings covering 18 %; labels annotate ships and aircraft."""
    f = fact_sheet("port")
    for o in f["objects"]:
        o["class"] = "ship"
    f["labels"] = {"source": "vlissingen_ais.geojson", "classes_labelled": ["aircraft", "ship"],
                   "counts": {"aircraft": 0, "ship": 5}}  # fmt: skip
    f["ext"] = {
        "land_cover": {
            "product": "esa-worldcover",
            "version": "v200",
            "year": 2021,
            "source": "cog",
            "valid_fraction": 1.0,
            "fractions": {"built-up": 0.45, "permanent water bodies": 0.35, "grassland": 0.2},
            "dominant": "built-up",
            "cells": _cells_lc(["permanent water bodies"] * 2 + ["built-up"] * 7),
        },
        "osm": {
            "source": "pbf",
            "snapshot": "2024-01-01T00:00:00Z",
            "queried": ["port", "road", "railway", "building", "storage tank"],
            "features": {
                "port": {"count": 1, "length_m": None, "area_m2": 2.0e6, "cells": [1, 2, 4], "names": []},
                "road": {
                    "count": 14,
                    "length_m": 2400.0,
                    "area_m2": None,
                    "cells": [5, 6, 8, 9],
                    "names": [],
                },
                "building": {
                    "count": 120,
                    "length_m": None,
                    "area_m2": 2.6e6,
                    "cells": [5, 6, 7, 8, 9],
                    "names": [],
                },
            },
            "built_up_fraction": 0.18,
        },
    }
    return f


def farmland_with_ext() -> dict[str, Any]:
    """Tomelloso (LAND): Dynamic World crops 70 % / bare 30 %; OSM queried roads only, none mapped."""
    f = fact_sheet("land")
    f["ext"] = {
        "land_cover": {
            "product": "dynamic-world",
            "version": None,
            "year": None,
            "date_range": ["2021-01-01", "2021-12-31"],
            "source": "earthengine",
            "valid_fraction": 0.83,
            "fractions": {"crops": 0.7, "bare": 0.3},
            "dominant": "crops",
            "cells": _cells_lc(["crops"] * 6 + ["bare", "bare", None]),
        },
        "osm": {
            "source": "overpass",
            "snapshot": None,
            "queried": ["road", "railway"],
            "features": {},
            "built_up_fraction": None,
        },
    }
    return f


EXT_SHEETS = {"port_ext": port_with_ext, "farmland_ext": farmland_with_ext}
