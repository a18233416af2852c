"""The licences of a build, chosen from its inputs (never a fixed string): one entry per input that was
used, with the Hugging Face hub licence id that names its terms.

Why per input: a dataset made of Copernicus Sentinel pixels, AlphaEarth embeddings (CC-BY-4.0), ESA
WorldCover (CC-BY-4.0) and OpenStreetMap (ODbL) is bound by all of them at once; the card lists every one
and the hub's `license` field gets their ids. Terms the hub has no id for are `other` (with a name and a
link); a licence nobody states is `unknown`, never a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from triplet_builder.config import RegionConfig
from triplet_builder.record import SceneRef
from triplet_builder.sources.names import parse_name
from triplet_builder.writers.attributions import _KNOWN as KNOWN_LICENCE_SENTENCES
from triplet_builder.writers.card_sections import land_cover_used, osm_usage

COPERNICUS = {
    "license": "other",
    "name": "Copernicus Sentinel data terms",
    "link": "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
}
NASA_OPEN = {
    "license": "other",
    "name": "NASA Earth science data: open, without restriction",
    "link": "https://www.earthdata.nasa.gov/engage/open-data-services-software-policies/data-use-guidance",
}
CC_BY_4 = {
    "license": "cc-by-4.0",
    "name": "CC-BY-4.0",
    "link": "https://creativecommons.org/licenses/by/4.0/",
}
ODBL = {"license": "odbl", "name": "ODbL 1.0", "link": "https://opendatacommons.org/licenses/odbl/1-0/"}
UNKNOWN = {"license": "unknown", "name": "licence unknown", "link": None}
# licence files recognised by attributions._KNOWN -> hub ids
_HUB_IDS = {"MIT": "mit", "Apache-2.0": "apache-2.0", "CC-BY-4.0": "cc-by-4.0"}
_LICENCE_GLOBS = ("LICENSE*", "LICENCE*", "COPYING*")


def licence_file_id(folder: Path) -> dict[str, Any]:
    """The hub id of the licence file beside some input (MIT, Apache-2.0, CC-BY-4.0), else `unknown`."""
    for pattern in _LICENCE_GLOBS:
        for f in sorted(folder.glob(pattern)) if folder.is_dir() else []:
            if f.is_file():
                text = " ".join(f.read_text(encoding="utf-8", errors="replace").split())
                for name, sentence in KNOWN_LICENCE_SENTENCES:
                    if sentence in text:
                        return {
                            "license": _HUB_IDS[name],
                            "name": f"{name} ({f.name} beside it)",
                            "link": None,
                        }
                return {**UNKNOWN, "name": f"licence file {f.name} not recognised"}
    return {**UNKNOWN, "name": "licence unknown (no licence file beside it)"}


def _scene_entries(cfg: RegionConfig, scenes: list[SceneRef]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if any(s.sensor.startswith("Sentinel") for s in scenes):
        out.append({"input": "Sentinel-1 scenes", **COPERNICUS})
    if any((i := parse_name(s.scene_id)) and i.convention == "opera-rtc" for s in scenes):
        out.append({"input": "NASA/JPL OPERA RTC-S1 products", **NASA_OPEN})
    if cfg.scenes.type == "local":
        folders = sorted(
            {Path(u).parent for s in scenes for u in s.uris if "://" not in u and not u.startswith("/vsi")}
        )
        for folder in folders:
            out.append({"input": f"scene files in folder {folder.name}", **licence_file_id(folder)})
    elif cfg.scenes.type == "stac" and scenes:
        out.append({"input": f"STAC collection {getattr(cfg.scenes, 'collection', '')}", **UNKNOWN})
    return out


def input_licences(
    cfg: RegionConfig, scenes: list[SceneRef], stages: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One entry {input, license (hub id), name, link} per input of the build that states terms."""
    out = _scene_entries(cfg, scenes)
    if not cfg.embeddings.synthetic:
        out.append({"input": "AlphaEarth Foundations Satellite Embedding V1", **CC_BY_4})
    if cfg.facts.labels is not None:
        path = Path(cfg.facts.labels.path)
        out.append({"input": f"label file {path.name}", **licence_file_id(path.parent)})
    for e in cfg.stages:
        if e.name == "land_cover" and scenes and land_cover_used(stages) is not False:
            product = e.config.get("product", "esa-worldcover")
            name = "ESA WorldCover" if product == "esa-worldcover" else "Dynamic World V1"
            out.append({"input": name, **CC_BY_4})
    u = osm_usage(cfg.model_dump(mode="json"), stages)
    if u is not None and (not stages or u["snapshots"]):  # credited only when a chip used it
        out.append({"input": "OpenStreetMap", **ODBL})
    return out


def licence_fields(
    cfg: RegionConfig, scenes: list[SceneRef], stages: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest's `licenses` (hub ids, each once, in input order) and `licence_inputs` (the entries)."""
    entries = input_licences(cfg, scenes, stages)
    ids = list(dict.fromkeys(e["license"] for e in entries)) or ["unknown"]
    return {"licenses": ids, "licence_inputs": entries}
