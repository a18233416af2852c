"""A source configured but used by no chip (missing: skip without data, as in the demo) is credited nowhere:
no licence, no attribution, no citation; its card section says no data of it is in the dataset."""

from __future__ import annotations

from pathlib import Path

from pipelines.plan import plan
from triplet_builder.config import load_region
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card_sections import land_cover_section, osm_section
from triplet_builder.writers.licences import input_licences

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"  # lists land_cover and osm with missing: skip

SKIPPED = {
    "land_cover": {"extra": {"chips_skipped_missing_map": 43}},
    "osm": {"extra": {"chips_without_osm": 43}},
}
USED = {
    "land_cover": {"extra": {"chips_map_2020": 40, "chips_annotated": 40}},
    "osm": {"extra": {"snapshot 2024-05-01T00:00:00Z": 40}},
}


def test_skipped_sources_are_not_credited(tmp_path: Path) -> None:
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "o")})
    scenes = plan(cfg).scenes
    inputs = [e["input"] for e in input_licences(cfg, scenes, SKIPPED)]
    assert "ESA WorldCover" not in inputs and "OpenStreetMap" not in inputs
    text = " ".join(attributions(cfg, scenes, SKIPPED))
    assert "WorldCover" not in text and "OpenStreetMap" not in text
    manifest = {"config": cfg.model_dump(mode="json"), "stages": SKIPPED}
    assert "No land-cover data is in this dataset" in "\n".join(land_cover_section(manifest))
    assert "No OpenStreetMap data is in this dataset" in "\n".join(osm_section(manifest))


def test_used_sources_are_credited_for_what_was_used(tmp_path: Path) -> None:
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "o")})
    scenes = plan(cfg).scenes
    inputs = {e["input"]: e["license"] for e in input_licences(cfg, scenes, USED)}
    assert inputs["ESA WorldCover"] == "cc-by-4.0" and inputs["OpenStreetMap"] == "odbl"
    lines = attributions(cfg, scenes, USED)
    assert next(x for x in lines if "WorldCover" in x).startswith("© ESA WorldCover project 2020")
    assert any("snapshot(s): 2024-05-01T00:00:00Z (40 chip(s))" in x for x in lines)
