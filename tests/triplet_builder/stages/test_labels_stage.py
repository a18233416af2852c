"""The built-in labels stage: in the list right after facts only when the region has a label file, no
plugin may take its name, and it states counts (zeros included) only for chips of a scene the file labels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
from pyproj import Transformer

from pipelines.executor import plan
from pipelines.stages import run_task
from tests.conftest import PORT_TILE, ROOT
from tests.triplet_builder.stages.test_stage_interface import CORE
from triplet_builder.config import ConfigError, StageEntry, load_region
from triplet_builder.record import ChipRecord
from triplet_builder.stages.annotation import AnnotationStage
from triplet_builder.stages.assemble import assemble

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
HERE = "tests.triplet_builder.stages.test_labels_stage"
PORT_ID = "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db"


class NamedLabels(AnnotationStage):
    name = "labels"

    def annotate(self, record: ChipRecord) -> dict[str, Any]:  # pragma: no cover - never built
        return {}


class NeedsLabels(AnnotationStage):
    name = "needs_labels"
    needs: ClassVar[tuple[str, ...]] = ("labels",)

    def annotate(self, record: ChipRecord) -> dict[str, Any]:  # pragma: no cover - never built
        return {}


def test_labels_goes_right_after_facts_only_with_a_label_file() -> None:
    assert [p.name for p in assemble([])] == list(CORE)
    assert [p.name for p in assemble([], labels=True)] == [*CORE[:5], "labels", *CORE[5:]]
    after = [StageEntry(name=f"{HERE}:NeedsLabels", after="labels")]
    assert [p.name for p in assemble(after, labels=True)][4:7] == ["facts", "labels", "needs_labels"]
    with pytest.raises(ValueError, match=r"stages\[0\].after: no stage 'labels' before it"):
        assemble(after)
    with pytest.raises(ValueError, match="needs fact section\\(s\\) labels that no earlier stage provides"):
        assemble([StageEntry(name=f"{HERE}:NeedsLabels")])
    with pytest.raises(ValueError, match=r"stages\[0\].name: 'labels' is the built-in stage of facts.labels"):
        assemble([StageEntry(name=f"{HERE}:NamedLabels")], labels=True)


def test_a_plugin_after_labels_loads_only_with_a_label_file(tmp_path: Path) -> None:
    csv = tmp_path / "l.csv"
    pd.DataFrame({"lat": [43.38], "lon": [4.81], "label": ["ship"]}).to_csv(csv, index=False)
    stages = [{"name": f"{HERE}:NeedsLabels", "after": "labels"}]
    with pytest.raises(ConfigError, match=r"stages\[0\].after: no stage 'labels'"):
        load_region(DEMO, {"output.dir": str(tmp_path / "out"), "stages": stages})
    labels = {"path": str(csv), "match": "none"}
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out"), "stages": stages, "facts.labels": labels})
    assert cfg.stages[0].after == "labels"


def _port_points(rows_cols: list[tuple[int, int]]) -> list[tuple[float, float]]:
    with rasterio.open(PORT_TILE) as ds:
        tr = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        return [tr.transform(*ds.xy(r, c)) for r, c in rows_cols]


def _sheets(out: Path) -> list[dict[str, Any]]:
    return [json.loads(r["facts"]) for r in pq.read_table(out / "data", columns=["facts"]).to_pylist()]


@pytest.mark.parametrize("match", ["scene_id", "none"])
def test_a_scene_the_file_does_not_label_gets_no_negatives(tmp_path: Path, match: str) -> None:
    """Labels of the port scene only: with scene ids, the Camargue scene is one the file never looked at,
    so its chips state no count (no `labels`); declared timeless (`match: none`), the file covers every
    scene, and the Camargue chips (none of the port's points lie there) state 0 ships."""
    ((lon, lat),) = _port_points([(100, 150)])
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"scene_id": [PORT_ID], "lat": [lat], "lon": [lon], "class": ["ship"]}).to_csv(
        csv, index=False
    )
    labels = {"path": str(csv), "match": match}
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out"), "facts.labels": labels})
    task = next(t for t in plan(cfg).tasks if "20170309" in t.scene.scene_id)
    res = run_task(task, cfg)
    sheets = _sheets(tmp_path / "out")
    assert sheets and all(s["objects"] == [] for s in sheets)
    extra = res["stats"]["labels"]["extra"]
    if match == "scene_id":
        assert all("labels" not in s for s in sheets)
        assert (
            extra["chips_scene_not_in_file"] == res["stats"]["labels"]["kept"]
            and "chips_labelled" not in extra
        )
    else:
        assert all(
            s["labels"] == {"source": "labels.csv", "classes_labelled": ["ship"], "counts": {"ship": 0}}
            for s in sheets
        )
        assert extra["chips_labelled"] == res["stats"]["labels"]["kept"]


def test_the_parts_check_agrees_with_the_whole_sheet_check() -> None:
    """The stage checks only the parts it writes; on sheets whose other parts are valid it must accept and
    refuse exactly what the whole-sheet check does, at the same path."""
    from tests.triplet_builder.text.factsheets import fact_sheet
    from triplet_builder.facts.sheet import validate_facts
    from triplet_builder.stages.labels import _parts_validator

    check = _parts_validator()
    good = fact_sheet("port")
    good["labels"] = {"source": "a.csv", "classes_labelled": ["ship"], "counts": {"ship": 5}}
    no_class, other, negative, extra = (fact_sheet("port") for _ in range(4))
    del no_class["objects"][0]["class"]
    other["labels"] = {"source": "a.csv", "classes_labelled": ["other"], "counts": {"other": 0}}
    negative["labels"] = {"source": "a.csv", "classes_labelled": ["ship"], "counts": {"ship": -1}}
    extra["labels"] = {"source": "a.csv", "classes_labelled": [], "counts": {}, "note": "x"}
    validate_facts(good)
    check({k: good[k] for k in ("objects", "labels")})
    for sheet, path in [
        (no_class, "$.objects[0]"),
        (other, "$.labels.classes_labelled[0]"),
        (negative, "$.labels.counts.ship"),
        (extra, "$.labels"),
    ]:
        with pytest.raises(ValueError, match=re.escape(f"fact sheet invalid at {path}:")) as whole:
            validate_facts(sheet)
        with pytest.raises(ValueError) as part:
            check({k: sheet[k] for k in ("objects", "labels") if k in sheet})
        assert str(part.value) == str(whole.value)
