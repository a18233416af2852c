"""The split report (manifest `splits`, card section "Splits"): what each split holds and an independent
leakage check, both computed from the written shards.

Per split: chips, distinct split blocks (the blocks its chips' footprints share area with), scenes, and
targets (labelled objects + detected point targets of the fact sheets). A split with fewer than
`min_blocks` blocks is flagged: its chips are not independent samples of the region.

The leakage check does not trust the georeference stage's guard: it puts every kept footprint in a
shapely STRtree, intersects every pair of chips of different splits whose footprints meet, and reports
the largest area two such chips share (in m2, on an equal-area projection) and how many pairs share any;
and, for near duplicates, the largest fraction of a chip another chip of its scene and split covers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import shapely
from pyproj import Transformer

from schemas import SPLITS
from triplet_builder.grid import cells_touched

METHOD = (
    "a chip gets split S only if every split block (Major-TOM-style cell of block_km) its footprint "
    "shares area with hashes to S; a chip straddling blocks of different splits is rejected (split_guard)"
)
_COLUMNS = ["split", "scene_id", "geometry", "facts"]
_EQUAL_AREA = Transformer.from_crs("OGC:CRS84", "EPSG:6933", always_xy=True)  # world cylindrical equal area


@dataclass
class _SplitTally:
    chips: int = 0
    blocks: set[str] = field(default_factory=set)
    scenes: set[str] = field(default_factory=set)
    objects: int = 0
    detections: int = 0
    by_class: Counter[str] = field(default_factory=Counter)  # labelled objects per vocabulary class


def _targets(facts: str | None) -> tuple[list[dict[str, Any]], int]:
    """(labelled objects, number of detected point targets) of a fact sheet."""
    sheet = json.loads(facts) if facts else {}
    objects = sheet.get("objects") or []
    detections = (sheet.get("detections") or {}).get("items") or []
    return objects, len(detections)


def _area_m2(geom: shapely.Geometry) -> float:
    return float(
        shapely.area(shapely.transform(geom, lambda xy: np.column_stack(_EQUAL_AREA.transform(*xy.T))))
    )


def footprint_overlaps(
    footprints: list[shapely.Geometry], splits: list[str], scenes: list[str]
) -> tuple[dict[str, Any], float]:
    """Pairs of chips of different splits whose footprints meet, how many share area, the largest area;
    and the largest fraction of a chip's footprint another chip of the same scene and split covers."""
    if not footprints:
        return {"pairs_meeting": 0, "pairs_sharing_area": 0, "max_shared_m2": 0.0}, 0.0
    tree = shapely.STRtree(footprints)
    left, right = tree.query(footprints, predicate="intersects")
    pick = left < right
    left, right = left[pick], right[pick]
    labels, names = np.asarray(splits), np.asarray(scenes)
    cross = labels[left] != labels[right]
    areas = [
        _area_m2(shapely.intersection(footprints[i], footprints[j]))
        for i, j in zip(left[cross], right[cross], strict=True)
    ]
    same = ~cross & (names[left] == names[right])
    fractions = [
        float(shapely.area(shapely.intersection(footprints[i], footprints[j])))
        / min(float(shapely.area(footprints[i])), float(shapely.area(footprints[j])))
        for i, j in zip(left[same], right[same], strict=True)
    ]
    return {
        "pairs_meeting": len(areas),
        "pairs_sharing_area": sum(a > 0 for a in areas),
        "max_shared_m2": max(areas, default=0.0),
    }, max(fractions, default=0.0)


def split_report(
    out_dir: Path,
    files: Iterable[str],
    *,
    block_km: float,
    min_blocks: int,
    split_guard_rejects: int,
    expected: Iterable[str] = SPLITS,
    max_overlap: float | None = None,
    near_duplicates: int = 0,
    chip_km: float | None = None,
) -> dict[str, Any]:
    """The manifest's `splits` entry, read from the shards `files` (relative to out_dir); `expected`:
    the splits the config gives a share (an empty one is flagged); `max_overlap` and `near_duplicates`:
    chip.max_overlap and the flush windows it kept from being laid, reported as given; `chip_km`: the
    largest chip side (flagged when over half a block: most chips would straddle blocks)."""
    tallies: dict[str, _SplitTally] = {}
    footprints: list[shapely.Geometry] = []
    labels: list[str] = []
    scenes: list[str] = []
    for f in sorted(files):
        pf = pq.ParquetFile(Path(out_dir) / f)
        for batch in pf.iter_batches(columns=_COLUMNS):
            cols = batch.to_pydict()
            geoms = shapely.from_wkb(cols["geometry"])
            for split, scene, geom, facts in zip(
                cols["split"], cols["scene_id"], geoms, cols["facts"], strict=True
            ):
                t = tallies.setdefault(split, _SplitTally())
                t.chips += 1
                t.blocks.update(cells_touched(geom, block_km))
                t.scenes.add(scene)
                objects, n_det = _targets(facts)
                t.objects += len(objects)
                t.by_class.update(str(o.get("class", "unknown")) for o in objects)
                t.detections += n_det
                footprints.append(geom)
                labels.append(split)
                scenes.append(scene)
    order = [s for s in SPLITS if s in tallies] + sorted(s for s in tallies if s not in SPLITS)
    per_split = {
        s: {
            "chips": tallies[s].chips,
            "blocks": len(tallies[s].blocks),
            "scenes": len(tallies[s].scenes),
            "objects": tallies[s].objects,
            "detections": tallies[s].detections,
            "targets": tallies[s].objects + tallies[s].detections,
            "objects_by_class": dict(sorted(tallies[s].by_class.items())),
        }
        for s in order
    }
    shared = [
        sorted(set.intersection(tallies[a].blocks, tallies[b].blocks))
        for i, a in enumerate(order)
        for b in order[i + 1 :]
    ]
    cross, same_scene = footprint_overlaps(footprints, labels, scenes)
    return {
        "method": METHOD,
        "block_km": block_km,
        "min_blocks": min_blocks,
        "per_split": per_split,
        "split_guard_rejects": split_guard_rejects,
        "max_overlap": max_overlap,
        "windows_near_duplicate": near_duplicates,
        "blocks_in_two_splits": sum(len(x) for x in shared),
        "cross_split": cross,
        "max_same_scene_overlap": round(same_scene, 4),
        "chip_km": chip_km,
        "warnings": split_warnings(per_split, min_blocks, expected)
        + (
            [
                f"chips of {chip_km:g} km in blocks of {block_km:g} km: most chips straddle blocks and those "
                f"touching two splits are rejected (split_guard); raise split.block_km to >= {2 * chip_km:g}"
            ]
            if chip_km is not None and chip_km > block_km / 2
            else []
        ),
    }


def split_warnings(
    per_split: dict[str, dict[str, Any]], min_blocks: int, expected: Iterable[str] = SPLITS
) -> list[str]:
    """One line per expected split that is empty, and per split with fewer than min_blocks blocks."""
    lines = []
    for s in expected:
        if s not in per_split:
            lines.append(f"split {s} is empty")
    for s, c in per_split.items():
        if c["blocks"] < min_blocks:
            lines.append(
                f"split {s} has {c['blocks']} block(s) (< split.min_blocks {min_blocks}): {c['chips']} chip(s) "
                f"from {c['scenes']} scene(s) with {c['targets']} target(s), too few independent samples "
                "to measure generalisation"
            )
    return lines
