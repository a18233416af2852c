"""The manifest's `attributions`: one line per input actually used (scene files and their licence files,
remote collections, label file, embeddings), from what the inputs state; a licence nobody states is
`unknown`. Only file names go in, never the building machine's folders.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from triplet_builder.config import RegionConfig
from triplet_builder.record import SceneRef
from triplet_builder.sources.names import parse_name
from triplet_builder.writers.card import ALPHAEARTH_ATTRIBUTION, copernicus_attribution
from triplet_builder.writers.card_sections import OSM_ATTRIBUTION, OSM_LICENCE, osm_usage

_LICENCE_GLOBS = ("LICENSE*", "LICENCE*", "COPYING*")


_KNOWN = (  # licence texts recognised by a sentence only they contain
    ("MIT", "Permission is hereby granted, free of charge"),
    ("Apache-2.0", "Apache License, Version 2.0"),
    ("CC-BY-4.0", "Creative Commons Attribution 4.0"),
)


def _licence_line(folder: Path) -> tuple[str, str] | None:
    """(licence file name, what it says: the licence it is recognised as and its first line)."""
    for pattern in _LICENCE_GLOBS:
        for f in sorted(folder.glob(pattern)):
            if f.is_file():
                text = f.read_text(encoding="utf-8", errors="replace")
                first = next((ln.strip().lstrip("#").strip() for ln in text.splitlines() if ln.strip()), "")
                known = [name for name, sentence in _KNOWN if sentence in " ".join(text.split())]
                return f.name, f"{known[0] if known else 'licence not recognised'} ({first or 'empty'})"
    return None


def _local_lines(scenes: Iterable[SceneRef]) -> list[str]:
    by_folder: dict[Path, list[str]] = {}
    for s in scenes:
        for uri in s.uris:
            if "://" in uri or uri.startswith("/vsi"):
                continue
            by_folder.setdefault(Path(uri).parent, []).append(Path(uri).name)
    lines = []
    for folder, names in sorted(by_folder.items()):
        files = ", ".join(sorted(set(names)))
        lic = _licence_line(folder) if folder.is_dir() else None
        if lic is None:
            lines.append(f"SAR scene files {files}: licence unknown (no licence file beside them)")
        else:
            lines.append(f"SAR scene files {files}: licence file {lic[0]} beside them: {lic[1]}")
    return lines


def _land_cover_lines(
    cfg: RegionConfig, scenes: list[SceneRef], stages: dict[str, Any] | None = None
) -> list[str]:
    """The land-cover map of the `land_cover` stage: WorldCover per map year the chips used (the planned
    scenes' years before a build), or Dynamic World; nothing when no chip got a section."""
    from triplet_builder.sources.worldcover import map_year
    from triplet_builder.writers.card_sections import land_cover_used, worldcover_attribution

    if land_cover_used(stages) is False:
        return []
    extra = ((stages or {}).get("land_cover") or {}).get("extra") or {}
    used = sorted(int(k.rsplit("_", 1)[1]) for k, v in extra.items() if k.startswith("chips_map_") and v)
    lines = []
    for e in cfg.stages:
        if e.name != "land_cover" or not scenes:
            continue
        if e.config.get("product", "esa-worldcover") == "esa-worldcover":
            years = used or sorted({map_year(e.config.get("year", "nearest"), s.year) for s in scenes})
            lines += [worldcover_attribution(y) for y in years]
        else:
            lines.append(
                "Dynamic World V1 (Google, with the World Resources Institute and the National Geographic "
                "Society; CC-BY-4.0; Brown, C. F. et al. (2022), Scientific Data 9, 251)"
            )
    return lines


def osm_line(config: dict[str, Any] | None, stages: dict[str, Any] | None) -> list[str]:
    """The attribution line of the OpenStreetMap data the build used (none without an osm stage)."""
    u = osm_usage(config, stages)
    if u is None or (stages and not u["snapshots"]):  # no chip was annotated: nothing to credit
        return []
    snaps = ", ".join(
        f"{'not stated by the source' if s == 'unknown' else s} ({n} chip(s))"
        for s, n in u["snapshots"].items()
    )
    return [
        f"{OSM_ATTRIBUTION}: OpenStreetMap data from the {u['where']}, licence {OSM_LICENCE}; "
        f"snapshot(s): {snaps or 'none (no chip was annotated)'}"
    ]


def attributions(
    cfg: RegionConfig, scenes: list[SceneRef], stages: dict[str, Any] | None = None
) -> list[str]:
    """Attribution lines for the inputs of a build (scenes that were planned, labels, embeddings, and the
    annotation sources that `stages`, the build's per-stage statistics, show were used)."""
    lines: list[str] = []
    sentinel_years = [s.year for s in scenes if s.sensor.startswith("Sentinel")]
    if sentinel_years:
        lines.append(copernicus_attribution(sentinel_years))
    opera = sorted(
        {s.scene_id for s in scenes if (i := parse_name(s.scene_id)) and i.convention == "opera-rtc"}
    )
    if opera:
        lines.append(f"Contains modified NASA/JPL OPERA RTC-S1 data ({', '.join(opera)})")
    if cfg.scenes.type == "local":
        lines += _local_lines(scenes)
    elif cfg.scenes.type == "earthengine" and scenes:
        lines.append(
            f"SAR scenes: Google Earth Engine collection {getattr(cfg.scenes, 'collection', 'unknown')} "
            f"({len(scenes)} scene(s)); licence: that of the collection's provider"
        )
    elif cfg.scenes.type == "stac" and scenes:
        lines.append(
            f"SAR scenes: STAC collection {getattr(cfg.scenes, 'collection', 'unknown')} at "
            f"{getattr(cfg.scenes, 'url', 'unknown')} ({len(scenes)} scene(s)); licence unknown "
            "(see the catalogue)"
        )
    labels = cfg.facts.labels
    if labels is not None:
        path = Path(labels.path)
        lic = _licence_line(path.parent) if path.parent.is_dir() else None
        lines.append(
            f"Labels: {path.name}; "
            + (
                f"licence file {lic[0]} beside it: {lic[1]}"
                if lic
                else "licence unknown (no licence file beside it)"
            )
        )
    lines += _land_cover_lines(cfg, scenes, stages)
    if cfg.embeddings.synthetic:
        lines.append(
            "Embeddings: a SYNTHETIC stand-in made by this pipeline's demo mode; no AlphaEarth data used"
        )
    else:
        lines.append(ALPHAEARTH_ATTRIBUTION)
    lines += osm_line(cfg.model_dump(mode="json"), stages)
    return lines
