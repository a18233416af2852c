"""Sections of the dataset card computed from the build (its manifest and resolved config): radiometric
conventions and thresholds, labels and how they were matched to scenes, the frame of boxes and grid
cells, and the split report. `card.render_card` assembles them; nothing here is boilerplate: every figure
comes from the manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from schemas.frames import PAPER_FRAME, qa_frame
from triplet_builder.facts.cfar import MIN_MEASURABLE_PX
from triplet_builder.facts.surface import reference_band
from triplet_builder.facts.thresholds import resolve

CONVENTION_NAMES = {
    "sigma0": "sigma0 (backscatter normalised by the ellipsoid ground area)",
    "gamma0": "gamma0 (terrain-flattened: normalised by the illuminated area, radiometric terrain correction)",
    "beta0": "beta0 (radar brightness, normalised in slant range)",
    "unknown": "unknown (nothing in the product states it: no caption names a convention)",
}


def radiometry_section(manifest: dict[str, Any]) -> list[str]:
    """Per (convention, where it was read, polarisations): scene count and the water / bright thresholds the
    facts stage uses for it (the same `resolve` the stage calls)."""
    scenes = [s for s in manifest.get("scenes") or [] if isinstance(s, dict)]
    if not scenes:
        return []
    facts = (manifest.get("config") or {}).get("facts") or {}
    water_cfg, bright_cfg = facts.get("water_threshold_db"), facts.get("bright_threshold_db")
    groups = Counter(
        (
            str(s.get("backscatter", "unknown")),
            str(s.get("backscatter_source", "unknown")),
            tuple(s.get("polarisations") or ()),
        )
        for s in scenes
    )
    out = [
        "",
        "## Radiometry",
        "",
        "The backscatter convention of each scene is read from what the product states (sidecar, GeoTIFF "
        "tags, product name or type), never guessed; the water and strong-scatterer thresholds of the facts "
        "depend on it and on the polarisation.",
        "",
        "| convention | stated by | polarisations | scenes | water threshold | bright threshold |",
        "|---|---|---|---:|---|---|",
    ]
    for (conv, src, pols), n in sorted(groups.items()):
        if water_cfg == "otsu":
            water = "Otsu split of each scene's histogram (`facts.surface.water_threshold_db` of each row)"
            t = resolve(conv, pols, reference_band(pols), None, bright_cfg)
        else:
            t = resolve(conv, pols, reference_band(pols), water_cfg, bright_cfg)
            water = f"{t.water_db:g} dB ({t.water_source})"
            if t.water_cross_db is not None:
                water += f"; cross-pol {t.water_cross_db:g} dB, water only where both are below"
        bright = f"{t.bright_db:g} dB ({t.bright_source})"
        out.append(
            f"| {CONVENTION_NAMES.get(conv, conv)} | {src} | {', '.join(pols) or 'unknown'} | {n} | {water} | {bright} |"
        )
    return out


def labels_section(manifest: dict[str, Any]) -> list[str]:
    """Where object labels came from and how many were used, matched elsewhere or never used."""
    lc = (manifest.get("counts") or {}).get("labels")
    out = ["", "## Object labels", ""]
    if not isinstance(lc, dict):
        return [
            *out,
            "No label file was used: the only targets are the CFAR detections (bright point targets "
            "without a class).",
        ]
    rule = {
        "scene_id": "by the scene / product id column (the same acquisition, never by date or prefix alone)",
        "time": f"by acquisition time within {lc.get('time_tolerance_s', 'unknown')} s of the scene start",
        "none": "not matched: the labels were declared timeless (`match: none`) and used on every scene they overlap",
    }.get(str(lc.get("match")), str(lc.get("match")))
    return [
        *out,
        f"Labels from `{lc.get('file', 'unknown')}` were matched to scenes {rule}; a label is used only in a "
        "chip of its own scene that holds it. Of its "
        f"{lc.get('total', 0)} rows: {lc.get('in_chips', 0)} in a chip window of the plan (chips rejected later "
        f"keep theirs out of the rows), {lc.get('matched_outside_chips', 0)} "
        f"matched to a scene of the build but in none of its chips, {lc.get('unmatched', 0)} matched to no scene "
        f"of the build (never used), {lc.get('no_position', 0)} without a position (skipped).",
        *_classes_lines(lc),
        *_class_counts(manifest),
    ]


def _classes_lines(lc: dict[str, Any]) -> list[str]:
    """Which classes the file labels, and what a count of 0 means (the only negatives the text states)."""
    classes = lc.get("classes_labelled")
    if classes is None:
        return []
    how = {
        "config": "as the region file declares (`facts.labels.classes`)",
        "file": "every class found in the file: the build assumes the file labels every object of each class "
        "it holds (declare `facts.labels.classes` otherwise)",
    }.get(str(lc.get("classes_from")), "")
    named = ", ".join(classes) if classes else "none"
    return [
        "",
        f"Classes labelled: {named} ({how}). Each object keeps the file's own class (`label`) beside its "
        "vocabulary class (`class`; what maps to none is `other`, e.g. xView3's non-vessel objects, never a "
        "ship). A chip's `facts.labels.counts` gives the number of objects of each labelled class, zeros "
        'included: a 0 ("no aircraft are labelled here") is stated only for these classes, and only for chips '
        "of a scene the file labels (a row matches it); other chips have no `labels` section.",
    ]


def _class_counts(manifest: dict[str, Any]) -> list[str]:
    """Labelled objects per class and split, from the split report (read from the written rows)."""
    per_split = ((manifest.get("splits") or {}).get("per_split")) or {}
    by_split = {s: c.get("objects_by_class") or {} for s, c in per_split.items() if isinstance(c, dict)}
    classes = sorted({k for c in by_split.values() for k in c})
    if not classes:
        return ["", "No labelled object lies in a kept chip."] if per_split else []
    splits = list(by_split)
    out = [
        "",
        "Labelled objects in the kept chips, per class and split:",
        "",
        f"| class | {' | '.join(splits)} | all |",
        f"|---|{'---:|' * (len(splits) + 1)}",
    ]
    for k in classes:
        n = [int(by_split[s].get(k, 0)) for s in splits]
        out.append(f"| {k} | {' | '.join(map(str, n))} | {sum(n)} |")
    return out


def boxes_section(config: Any) -> list[str]:
    """How boxes, cells, targets and the optional backscatter column are to be read, from the build's config."""
    out = ["", "## Boxes, grid cells and targets", ""]
    if not isinstance(config, dict) or not isinstance(config.get("chip"), dict):
        return [*out, "The build's configuration is unknown: the frame of the boxes is not stated here."]
    size = int(config["chip"]["size"])
    frame = qa_frame(size, size)
    scale = PAPER_FRAME.width / size
    out += [
        f"Every box in `qa` and `messages` is [x1, y1, x2, y2] in {frame.phrase} (the chip as stored, "
        f"{size} x {size} px; every detection and classification question says so). For the FUSAR-GPT "
        f"{PAPER_FRAME.width} x {PAPER_FRAME.height} frame multiply by {PAPER_FRAME.width} / {size} = "
        f"{scale:g} (`schemas.frames.rescale_box`, which the trainer uses). In `facts`, `bbox_norm` is the "
        "same box normalized to [0, 1] and the 3 x 3 cells (1..9 row-major) are cut at 1/3 and 2/3 of the "
        "image in normalized coordinates, so a target keeps its cell at any image size.",
    ]
    cfar = (config.get("facts") or {}).get("cfar")
    if isinstance(cfar, dict) and {"max_extent_px", "guard", "train"} <= set(cfar):
        margin = int(cfar["max_extent_px"]) + int(cfar["guard"]) + int(cfar["train"])
        out += [
            "",
            f"Bright point targets (CA-CFAR) are detected on each chip with a {margin} px context around it "
            "and belong to the chip that holds their peak, so overlapping chips report the same targets; "
            f"boxes are clipped to the chip. A length is stated only for a target spanning at least "
            f"{MIN_MEASURABLE_PX} px along its box's longer side; smaller ones are point targets of unknown "
            "size (`length_m` null).",
        ]
    on = (config.get("output") or {}).get("backscatter_column")
    if on is not None:
        out += [
            "",
            "`backscatter_db` holds each chip's float32 dB (P, H, W), NaN = invalid, as a zlib-compressed "
            "`.npy` (`schemas.backscatter.decode_backscatter`)."
            if on
            else "`backscatter_db` is null in this build (`output.backscatter_column: false`); use the PNG "
            "stretch above, which saturates on bright targets.",
        ]
    return out


def splits_section(report: dict[str, Any] | None) -> list[str]:
    """The "Splits" section: the method and the figures of the split report (nothing when there is none)."""
    if not report:
        return []
    cross = report["cross_split"]
    out = [
        "## Splits",
        "",
        f"Splits are blocked spatially with blocks of {report['block_km']} km: {report['method']}. Two chips "
        "of different splits therefore cover disjoint sets of blocks and share no pixel, whatever scene "
        "they come from. No guard band is added: sharing no block already means sharing no pixel (larger "
        "blocks, not a band, widen the distance between splits). Measured on the kept chips: "
        f"{report['split_guard_rejects']} chip(s) rejected by the split guard; "
        f"{cross['pairs_meeting']} pair(s) of chips of different splits have footprints that meet, "
        f"{cross['pairs_sharing_area']} of them share area, the largest shared area is "
        f"{cross['max_shared_m2']:g} m2; {report['blocks_in_two_splits']} block(s) hold chips of two splits.",
        "",
    ]
    if report.get("max_overlap") is not None:
        out += [
            "Near duplicates: the largest fraction of a chip's footprint covered by another kept chip of its "
            f"scene is {report.get('max_same_scene_overlap', 'unknown')} (chip.max_overlap "
            f"{report['max_overlap']:g}); {report.get('windows_near_duplicate', 0)} flush last-row / "
            "last-column window(s) that would have shared more were not laid.",
            "",
        ]
    out += [
        "| split | chips | blocks | scenes | labelled objects | detected targets |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {s} | {c['chips']} | {c['blocks']} | {c['scenes']} | {c['objects']} | {c['detections']} |"
        for s, c in report["per_split"].items()
    ]
    out.append("")
    if report.get("warnings"):
        for w in report["warnings"]:
            out += ["> [!WARNING]", f"> {w}", ""]
    return out


WORLDCOVER_CITATIONS = {
    2020: "Zanaga, D. et al. (2021). ESA WorldCover 10 m 2020 v100. doi:10.5281/zenodo.5571936",
    2021: "Zanaga, D. et al. (2022). ESA WorldCover 10 m 2021 v200. doi:10.5281/zenodo.7254221",
}


def worldcover_attribution(year: int) -> str:
    """The attribution WorldCover's licence asks for, for the map of `year`."""
    return (
        f"© ESA WorldCover project {year} / Contains modified Copernicus Sentinel data ({year}) processed by "
        f"ESA WorldCover consortium (CC-BY-4.0; {WORLDCOVER_CITATIONS[year]})"
    )


def land_cover_used(stages: dict[str, Any] | None) -> bool | None:
    """Whether the build's land_cover stage put a section on any chip (None: no land_cover statistics)."""
    extra = ((stages or {}).get("land_cover") or {}).get("extra")
    if not isinstance(extra, dict):
        return None if not (stages or {}).get("land_cover") else False
    return int(extra.get("chips_annotated", 0)) > 0


def land_cover_section(manifest: dict[str, Any]) -> list[str]:
    """The land-cover maps the `land_cover` stage used (from its counters in the manifest): map years, how
    far they are from the acquisitions, chips without map pixels or skipped, and the licence."""
    extra = ((manifest.get("stages") or {}).get("land_cover") or {}).get("extra")
    if not isinstance(extra, dict):
        return []
    if not land_cover_used(manifest.get("stages")):
        return [
            "",
            "## Land cover",
            "",
            "The land_cover stage ran but no chip has a `facts.ext.land_cover` section: the map was not "
            f"available ({extra.get('chips_skipped_missing_map', 0)} chips skipped, `missing: skip`; the build "
            "log says what was missing). No land-cover data is in this dataset.",
        ]
    years = {int(k.rsplit("_", 1)[1]): int(v) for k, v in extra.items() if k.startswith("chips_map_")}
    gaps = {int(k.rsplit("_", 1)[1]): int(v) for k, v in extra.items() if k.startswith("chips_year_gap_")}
    out = ["", "## Land cover", ""]
    if years:
        out.append(
            "`facts.ext.land_cover` holds ESA WorldCover 10 m class fractions per chip and per 3 x 3 cell (the map "
            "resampled, nearest, onto each chip's own grid). Maps used: "
            + ", ".join(f"{y} ({n} chips)" for y, n in sorted(years.items()))
            + ". The map year is not the acquisition year: "
            + ", ".join(f"{n} chips {g} year(s) apart" for g, n in sorted(gaps.items()))
            + "; land cover may have changed in between, and 2020 (v100) and 2021 (v200) differ by algorithm "
            "as well as by change on the ground."
        )
    else:
        out.append(
            "`facts.ext.land_cover` holds Dynamic World classes (the mode of `label` over each chip's "
            "`date_range`) per chip and per 3 x 3 cell."
        )
    if extra.get("chips_without_map_pixels"):
        out.append(
            f"{extra['chips_without_map_pixels']} chips have no map pixel (e.g. open sea, where WorldCover has no "
            "tile): their section states no class (`dominant` null), not water."
        )
    if extra.get("chips_skipped_missing_map"):
        out.append(
            f"{extra['chips_skipped_missing_map']} chips have no land_cover section: the map was missing "
            "(`missing: skip`; the build log says what)."
        )
    out.append("Licence and attribution of the map: see *Licences and attributions*.")
    return out


OSM_ATTRIBUTION = "© OpenStreetMap contributors"
OSM_LICENCE = "ODbL 1.0 (https://opendatacommons.org/licenses/odbl/1-0/)"


def osm_usage(config: dict[str, Any] | None, stages: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the build's `osm` stage used (its config in the build's config, its counters in the stage
    statistics): source, where from (endpoint, or the extract's file name only), {snapshot: chips};
    None when the build has no osm stage."""
    entries = [e for e in (config or {}).get("stages") or [] if isinstance(e, dict)]
    entry = next((e for e in entries if e.get("name") in ("osm", "triplet_builder.stages.osm:Osm")), None)
    if entry is None:
        return None
    c = entry.get("config") or {}
    source = c.get("source", "overpass")
    where = (
        f"Overpass API {c.get('endpoint', 'https://overpass-api.de/api')}"
        if source == "overpass"
        else f"extract {Path(str(c.get('path'))).name}"
    )
    extra = ((stages or {}).get("osm") or {}).get("extra") or {}
    snapshots = {
        k.removeprefix("snapshot "): int(v) for k, v in sorted(extra.items()) if k.startswith("snapshot ")
    }
    return {"source": source, "where": where, "snapshots": snapshots, "extra": extra, "config": c}


def osm_section(manifest: dict[str, Any]) -> list[str]:
    """The "OpenStreetMap" section (builds with the osm stage): where the data came from, its snapshot(s)
    with the chips annotated from each, chips without data, the licence, and how to read a negative."""
    u = osm_usage(manifest.get("config"), manifest.get("stages"))
    if u is None:
        return []
    c, extra = u["config"], u["extra"]
    if not u["snapshots"]:
        return [
            "",
            "## OpenStreetMap",
            "",
            f"The osm stage ran but no chip has a `facts.ext.osm` section: the {u['where']} gave no data "
            f"({extra.get('chips_without_osm', 0)} chips without, `missing: skip`; the build log says why). No "
            "OpenStreetMap data is in this dataset.",
        ]
    snaps = "; ".join(
        f"{'not stated by the source' if s == 'unknown' else s}: {n} chip(s)"
        for s, n in u["snapshots"].items()
    )
    out = [
        "",
        "## OpenStreetMap",
        "",
        f"`facts.ext.osm` holds the OpenStreetMap features in each chip's footprint, from the {u['where']} "
        f"(snapshot {snaps or 'none: no chip was annotated'}). Features queried: "
        f"{', '.join(c.get('features') or []) or 'unknown'}. A queried feature missing from a chip's section "
        "has no element there in OpenStreetMap at that snapshot: it is not mapped, which is not proof that "
        "it does not exist. Lengths and areas are geodesic (WGS84) and clipped to the footprint.",
    ]
    if extra.get("chips_without_osm"):
        out += [
            "",
            f"{extra['chips_without_osm']} chip(s) got no OpenStreetMap section: the source had no data for them "
            "(`missing: skip`).",
        ]
    if u["source"] == "overpass":
        out += [
            "",
            f"Overpass requests: {extra.get('requests', 0)} ({extra.get('retries', 0)} retries), answers "
            f"reused from the cache: {extra.get('cache_hits', 0)}.",
        ]
    out += ["", f"{OSM_ATTRIBUTION}. The OpenStreetMap data is available under the {OSM_LICENCE}."]
    return out
