"""Attribution lines come from the inputs: product conventions, licence files beside the scenes, labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.conftest import OPERA, ROOT, port_scene
from triplet_builder.config import load_region
from triplet_builder.writers.attributions import attributions
from triplet_builder.writers.card import ALPHAEARTH_ATTRIBUTION

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def test_opera_scene_without_licence_file_and_a_label_file(tmp_path: Path) -> None:
    labels = tmp_path / "ships.geojson"
    labels.write_text('{"type": "FeatureCollection", "features": []}')
    cfg = load_region(
        DEMO,
        {
            "output.dir": str(tmp_path / "out"),
            "embeddings.synthetic": False,
            "facts.labels": {"path": str(labels), "match": "none"},
            "stages": [],  # scenes, labels and embeddings only (no annotation source)
        },
    )
    bands = tuple(dataclasses.replace(b, uri=str(OPERA)) for b in port_scene().bands)
    scene = dataclasses.replace(port_scene(scene_id=OPERA.stem), bands=bands)
    lines = attributions(cfg, [scene])
    assert lines[0] == "Contains modified Copernicus Sentinel data 2017"
    assert lines[1] == f"Contains modified NASA/JPL OPERA RTC-S1 data ({OPERA.stem})"
    assert lines[2] == f"SAR scene files {OPERA.name}: licence unknown (no licence file beside them)"
    assert lines[3] == "Labels: ships.geojson; licence unknown (no licence file beside it)"
    assert lines[4] == ALPHAEARTH_ATTRIBUTION and len(lines) == 5
    assert str(tmp_path) not in " ".join(lines) and str(ROOT) not in " ".join(lines)
