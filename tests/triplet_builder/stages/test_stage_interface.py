"""The stage interface: the batch base, the assembled list (core stages, plugins by dotted path, order
checks), namespaced fact sections, and plugin configs checked when the region file loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from pipelines.executor import plan
from pipelines.stages import TaskFailed, TaskSpec, build_stages, run_task
from schemas import facts_schema_with
from tests.conftest import ROOT, port_scene
from triplet_builder.config import ConfigError, StageEntry, load_region
from triplet_builder.facts.sheet import validate_facts
from triplet_builder.record import ChipRecord, Window
from triplet_builder.stages.annotation import AnnotationStage, NoConfig
from triplet_builder.stages.assemble import assemble, stage_names
from triplet_builder.stages.base import BatchStage, StageStats, Stats
from triplet_builder.stages.write import Write
from triplet_builder.text.consistency import check_text

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
HERE = "tests.triplet_builder.stages.test_stage_interface"
CORE = ("tile", "georeference", "embed", "screen", "facts", "text", "filter", "write")


class Tally(BatchStage):
    """Records the batches it gets; rejects chips whose id ends in 'x'."""

    name = "tally"
    batch = 3

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        self.batches.append([r.chip_id for r in records])
        st.extra["calls"] += 1
        for r in records:
            if r.chip_id.endswith("x"):
                r.reject(self.name, "ends_in_x", r.chip_id)


class EarlyTally(Tally):
    """A plugin that adds no fact section (a pixel check): built as cls(config, region) like any plugin."""

    name = "early_tally"
    config_model = NoConfig

    def __init__(self, config: BaseModel, region: Any) -> None:
        super().__init__()


class DepthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metres: int = 1


class Depth(AnnotationStage):
    name = "depth"
    config_model = DepthConfig
    facts_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["metres"],
        "additionalProperties": False,
        "properties": {"metres": {"type": "integer", "minimum": 0}},
    }

    def annotate(self, record: ChipRecord) -> dict[str, Any]:
        return {"metres": self.config.metres}  # type: ignore[attr-defined]


class NeedsDepth(AnnotationStage):
    name = "needs_depth"
    needs = ("depth",)

    def annotate(self, record: ChipRecord) -> dict[str, Any]:
        return {"depth_seen": record.facts["ext"]["depth"]["metres"]}  # type: ignore[index]


class Boom(AnnotationStage):
    name = "boom"

    def annotate(self, record: ChipRecord) -> dict[str, Any]:
        raise RuntimeError("the annotation service is down")


class NotAStage:
    name = "not_a_stage"


def entry(cls: str, after: str | None = None, **config: Any) -> StageEntry:
    return StageEntry(name=f"{HERE}:{cls}", after=after, config=config)


def _records(ids: list[str]) -> list[ChipRecord]:
    scene = port_scene()
    out = []
    for i, cid in enumerate(ids):
        r = ChipRecord(cid, scene, Window(i, 0, 8, 8, 8, 8))
        if cid.startswith("r"):
            r.reject("tile", "nodata", "rejected upstream")
        out.append(r)
    return out


def test_batch_stage_batches_the_kept_records_and_counts_them() -> None:
    stage, stats = Tally(), Stats()
    recs = _records(["a", "r1", "bx", "c", "d", "r2", "e", "f"])
    out = list(stage.run(recs, stats))
    assert [r.chip_id for r in out] == [r.chip_id for r in recs]  # order kept, rejected records pass
    assert stage.batches == [["a", "bx"], ["c", "d"], ["e", "f"]]  # batches of 3 records, kept ones only
    st = stats["tally"]
    assert (st.seen, st.kept, dict(st.rejected), st.extra["calls"]) == (6, 5, {"ends_in_x": 1}, 3)
    assert [r.reject_reason for r in out if r.rejected] == ["nodata", "ends_in_x", "nodata"]


def test_the_core_list_ends_with_the_writer_and_names_come_from_it(tmp_path: Path) -> None:
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out"), "stages": []})  # the core list alone
    stages = build_stages(cfg, task_id=3)
    assert tuple(s.name for s in stages) == stage_names() == CORE
    assert isinstance(stages[-1], Write) and stages[-1].writer.task_id == 3
    assert stages[CORE.index("screen")].name == "screen" and CORE.index("screen") < CORE.index("facts")
    for s in stages:
        s.close()


def test_plugins_go_where_their_entries_say() -> None:
    names = [p.name for p in assemble([entry("Depth"), entry("NeedsDepth")])]
    assert names == [*CORE[:5], "depth", "needs_depth", *CORE[5:]]  # default: right before text
    names = [p.name for p in assemble([entry("Depth", after="facts"), entry("NeedsDepth", after="depth")])]
    assert names == [*CORE[:5], "depth", "needs_depth", *CORE[5:]]  # after an earlier entry
    names = [p.name for p in assemble([entry("Depth", after="facts"), entry("EarlyTally", after="facts")])]
    assert names[4:7] == ["facts", "depth", "early_tally"]  # several after one stage keep the file's order
    names = [p.name for p in assemble([entry("EarlyTally", after="georeference")])]
    assert names[:4] == ["tile", "georeference", "early_tally", "embed"]  # no fact section: may go early
    with pytest.raises(ValueError, match="Tally' declares no config_model"):
        assemble([entry("Tally")])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("NeedsDepth")], "stages[0]: stage 'needs_depth' needs fact section(s) depth that no earlier"),
        (
            [entry("NeedsDepth", after="facts"), entry("Depth")],
            "stages[0]: stage 'needs_depth' needs fact section(s) depth",
        ),
        (
            [entry("Depth", after="embed")],
            "stages[0]: stage 'depth' adds a fact section, but the sheet exists",
        ),
        ([entry("Depth", after="write")], "stages[0].after: nothing goes after 'write'"),
        ([entry("Depth", after="fact")], "stages[0].after: no stage 'fact' before it"),
        ([entry("Depth"), entry("Depth")], "stages[1].name: a stage named 'depth' is already in the list"),
        ([entry("NotAStage")], f"stage '{HERE}:NotAStage' is not a subclass of"),
        ([entry("Missing")], f"stage '{HERE}:Missing' cannot be imported (AttributeError"),
        (
            [StageEntry(name="no_such_pkg.mod:Stage")],
            "stages[0].name: stage 'no_such_pkg.mod:Stage' cannot be imported (ModuleNotFoundError",
        ),
        (
            [StageEntry(name="no_such_plugin")],
            "stages[0].name: stage 'no_such_plugin' is neither an installed plugin (entry points of group "
            "triplet_builder.stages:",
        ),
    ],
)
def test_misplaced_or_missing_stages_are_one_line_errors(entries: list[StageEntry], message: str) -> None:
    with pytest.raises(ValueError) as e:
        assemble(entries)
    assert message in str(e.value) and "\n" not in str(e.value)


def _region(tmp: Path, stages: list[dict[str, Any]]) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data" / "demo" / "spatialist" / "*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data" / "demo" / "aef_synthetic")
    raw["output"]["dir"] = str(tmp / "out")
    raw["stages"] = stages
    path = tmp / "region.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_region_file_plugin_errors_stop_before_any_work(tmp_path: Path) -> None:
    bad = _region(tmp_path, [{"name": f"{HERE}:Depth", "config": {"metres": "deep", "colour": 1}}])
    with pytest.raises(ConfigError) as e:
        load_region(bad)
    msg = str(e.value)
    assert "stages[0].config.metres: Input should be a valid integer" in msg
    assert "stages[0].config.colour: Extra inputs are not permitted" in msg and "\n" not in msg
    r = subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(_region(tmp_path, [{"name": "no_such_plugin"}]))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "stages[0].name: stage 'no_such_plugin' is neither an installed plugin" in r.stderr
    assert "install the plugin's package or fix the name" in r.stderr


def test_a_plugins_config_is_part_of_the_config_hash(tmp_path: Path) -> None:
    one = load_region(_region(tmp_path, [{"name": f"{HERE}:Depth", "config": {"metres": 1}}]))
    two = load_region(_region(tmp_path, [{"name": f"{HERE}:Depth", "config": {"metres": 2}}]))
    none = load_region(_region(tmp_path, []))
    assert len({one.config_hash(), two.config_hash(), none.config_hash()}) == 3


def test_sections_are_validated_against_the_stages_schema(tmp_path: Path) -> None:
    cfg = load_region(_region(tmp_path, []))
    from tests.triplet_builder.text.factsheets import fact_sheet

    rec = _records(["a"])[0]
    rec.facts = fact_sheet("land")
    list(Depth(DepthConfig(metres=4), cfg).run([rec], Stats()))
    assert rec.facts["ext"] == {"depth": {"metres": 4}}
    validate_facts(rec.facts)  # the core schema allows the extension point
    whole = facts_schema_with({"depth": Depth.facts_schema})
    jsonschema.validate(rec.facts, whole)  # and the composed schema holds the section
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**rec.facts, "ext": {"depth": {"metres": -1}}}, whole)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**rec.facts, "ext": {"unknown": {}}}, whole)
    assert check_text(rec.facts, {}, []) == check_text(
        {k: v for k, v in rec.facts.items() if k != "ext"}, {}, []
    )
    rec2 = _records(["b"])[0]
    rec2.facts = fact_sheet("land")
    with pytest.raises(ValueError, match=r"fact sheet invalid at \$\.ext\.depth\.metres"):
        list(Depth(DepthConfig(metres=-3), cfg).run([rec2], Stats()))


def test_a_failing_plugin_fails_its_task_and_leaves_nothing(tmp_path: Path) -> None:
    cfg = load_region(_region(tmp_path, [{"name": f"{HERE}:Boom"}]))
    t = plan(cfg).tasks[1]
    with pytest.raises(TaskFailed, match="RuntimeError: the annotation service is down"):
        run_task(TaskSpec(0, t.scene, t.windows[:4]), cfg)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_plugin_failing_at_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_stage_module.py").write_text("raise RuntimeError('needs a licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as e:
        assemble([StageEntry(name="broken_stage_module:Stage")])
    assert str(e.value) == (
        "stages[0].name: stage 'broken_stage_module:Stage' cannot be imported (RuntimeError: needs a licence "
        "key): install the package that provides it or fix the path"
    )
