"""Views of the annotation sections for the LLM prompt (DERIVED): land cover, OSM, labels and the
functions of facts/functionality.py, in the dataset's wording conventions, so the model copies rather
than computes. Nothing here is new information; a key is present only when its section is."""

from __future__ import annotations

from typing import Any

from triplet_builder.facts.functionality import derive_functions
from triplet_builder.text.captions.surface import land_cover_source
from triplet_builder.text.captions.words import distance
from triplet_builder.text.consistency import format_percent


def annotation_views(facts: dict[str, Any]) -> dict[str, Any]:
    """{land_cover, osm, labels, functions} views (see the module docstring)."""
    out: dict[str, Any] = {
        "functions": [{"function": f.name, "evidence": list(f.evidence)} for f in derive_functions(facts)]
    }
    ext = facts.get("ext") or {}
    lc = ext.get("land_cover")
    if lc:
        out["land_cover"] = {
            "source": land_cover_source(lc),
            "dominant": lc.get("dominant"),
            "percent": {
                c: format_percent(f) for c, f in sorted(lc["fractions"].items(), key=lambda kv: -kv[1])
            },
            "cell_dominant": {str(c["cell"]): c.get("dominant") for c in lc.get("cells") or []},
        }
    osm = ext.get("osm")
    if osm:
        feats = osm.get("features") or {}
        out["osm"] = {
            "features": {
                n: {
                    "count": f["count"],
                    **({"length": distance(float(f["length_m"]))} if f.get("length_m") else {}),
                    "cells": f.get("cells") or [],
                }
                for n, f in sorted(feats.items())
            },
            "not_mapped": sorted(set(osm.get("queried") or []) - set(feats)),
            **(
                {"built_up_percent": format_percent(float(osm["built_up_fraction"]))}
                if osm.get("built_up_fraction") is not None
                else {}
            ),
        }
    labels = facts.get("labels")
    if labels:
        counts = labels.get("counts") or {}
        out["labels"] = {
            "source": labels.get("source"),
            "counts": counts,
            "absent": sorted(c for c in labels.get("classes_labelled") or [] if not counts.get(c)),
        }
    return out


__all__ = ["annotation_views"]
