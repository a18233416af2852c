"""The CLI's `build` end to end in the quick subset: one real demo tile, one Dask worker (a few
seconds). What the command prints, the manifest and the shards must agree, every window is accounted
for, and kept chips of different splits never share ground; a bad region file ends in one line.
(tests/pipelines/test_build.py covers the whole demo, resume and every bad input: slow.)"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
import yaml
from pyproj import Transformer

from tests.conftest import PORT_TILE, ROOT
from triplet_builder.config import load_region

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
TO_UTM = Transformer.from_crs("OGC:CRS84", "EPSG:32631", always_xy=True)


def _region(tmp: Path, **changes: object) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(PORT_TILE)]  # the 2017-12-10 tile alone (same file as data/demo)
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(tmp / "out")
    raw["workers"] = 1
    raw.update(changes)
    path = tmp / "region.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("cli")
    return tmp / "out", _cli("build", str(_region(tmp)), "--no-progress")


def test_build_prints_what_it_wrote(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, r = built
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    m = json.loads((out / "manifest.json").read_text())
    c = m["counts"]
    rows = pq.read_table(out / "data", columns=["chip_id", "split"]).to_pylist()
    rej_files = sorted((out / "rejects").glob("*.parquet"))
    rejects = pq.read_table(rej_files, columns=["chip_id", "reason"]).to_pylist() if rej_files else []
    head = re.search(
        r"(\d+) scene\(s\), (\d+) window\(s\) .*?, (\d+) chip\(s\) kept, (\d+) rejected", r.stdout
    )
    assert head, r.stdout
    assert [int(g) for g in head.groups()] == [1, c["windows"], len(rows), len(rejects)]
    assert c["chips_kept"] == len(rows) > 0 and c["chips_rejected"] == len(rejects)
    # every window once, in the shards or the rejects
    ids = [x["chip_id"] for x in rows + rejects]
    assert len(ids) == len(set(ids)) == c["windows"]
    splits = re.search(r"splits:\s+(.*)", r.stdout)
    assert splits, r.stdout
    said = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", splits.group(1))}
    assert said == {s: sum(x["split"] == s for x in rows) for s in said}
    assert sum(said.values()) == len(rows)


def test_build_keeps_splits_apart_on_the_ground(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = built
    t = pq.read_table(out / "data", columns=["chip_id", "split", "geometry"]).to_pylist()
    assert len({r["split"] for r in t}) >= 2
    foot = [
        shapely.transform(
            shapely.from_wkb(r["geometry"]), lambda xy: np.column_stack(TO_UTM.transform(*xy.T))
        )
        for r in t
    ]
    gap = np.inf
    for (a, fa), (b, fb) in itertools.combinations(zip(t, foot, strict=True), 2):
        if a["split"] != b["split"]:
            assert fa.intersection(fb).area < 1.0, (a["chip_id"], b["chip_id"])  # m2
            gap = min(gap, fa.distance(fb))
    assert gap < 1280  # not vacuous: chips of different splits lie within a chip of each other


def test_a_bad_region_file_is_one_line_and_non_zero(tmp_path: Path) -> None:
    r = _cli("build", str(_region(tmp_path, workers=0, bogus=1)))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "workers" in lines[0] and "bogus" in lines[0], r.stderr


# -- the one tool: help, version, verbosity, the trainer's commands --------------------------------------

PIPELINE_COMMANDS = ("build", "validate", "preview", "verify", "export")
MODEL_COMMANDS = ("train", "eval", "predict")


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from pipelines.cli import main

    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's --help / --version
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", PIPELINE_COMMANDS)
def test_every_pipeline_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _main(capsys, command, "--help")
    assert code == 0
    assert re.search(rf"^\s+triplet-builder {command} \S", out, re.M), out  # an example line


def test_top_level_help_lists_every_command_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "--help")
    assert code == 0
    listed = set(re.findall(r"^\s{4}(\w+)\s", out, re.M))
    assert set(PIPELINE_COMMANDS) | set(MODEL_COMMANDS) <= listed, out
    from triplet_builder import __version__

    code, out, _ = _main(capsys, "--version")
    assert (code, out.strip()) == (0, f"triplet-builder {__version__}")


@pytest.mark.slow  # imports torch and transformers (about 10 s)
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_trainer_commands_dispatch_to_the_model_package(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _main(capsys, command, "--help")
    assert code == 0
    assert f"python -m model.{command}" in out and f"triplet-builder {command} --" in out  # its examples
    # the arguments after the command reach the module's main: its own one-line error, exit 2
    args = {
        "train": ["--config", "/nonexistent/tiny.yaml"],
        "eval": ["--checkpoint", "/nonexistent-ckpt"],
        "predict": ["--checkpoint", "/nonexistent-ckpt", "--image", "/nonexistent.png", "--question", "q"],
    }[command]
    code, _, err = _main(capsys, "-q", command, *args)
    assert code == 2 and "/nonexistent" in err and "Traceback" not in err, err


def test_without_torch_the_trainer_commands_say_which_extra_and_the_pipeline_runs() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from pipelines.cli import main\n"
        "a = main(['train', '--config', 'model/configs/tiny.yaml'])\n"
        "b = main(['-q', 'validate', 'pipelines/regions/demo.yaml'])\n"
        "print('codes', a, b, 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "codes 2 0 False" in r.stdout
    assert r.stderr.strip().splitlines() == [
        "error: triplet-builder train needs torch: install the trainer extra: pip install 'sar-triplets[train]'"
    ]
    extra = re.search(r"^train = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    assert extra and '"torch>=' in extra.group(1)  # the extra named is the one that brings torch


# -- progress, quiet, --limit ------------------------------------------------------------------------------


def _bars(text: str) -> dict[str, tuple[int, int, int, int]]:
    """The last state of each stage's bar in a terminal transcript: (n, total, kept, rejected)."""
    last: dict[str, tuple[int, int, int, int]] = {}
    for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)):
        m = re.match(r"\s*([\w-]+): (\d+)/(\d+) chips \[.*<.*\], kept (\d+), rejected (\d+)", line)
        if m:
            n, total, kept, rejected = (int(g) for g in m.groups()[1:])
            last[m.group(1)] = (n, total, kept, rejected)
    return last


@pytest.mark.slow  # a LocalCluster build of one tile (about 10 s)
def test_stage_bars_follow_each_stage_and_match_the_manifest(tmp_path: Path) -> None:
    r = _cli("-v", "build", str(_region(tmp_path, filter={"min_std_db": 3.5})), "--dashboard")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    bars = _bars(r.stderr)
    assert list(bars) == m["stage_order"], r.stderr
    for name, (n, total, kept, rejected) in bars.items():
        st = m["stages"][name]
        assert (n, kept, rejected) == (st["seen"], st["kept"], sum(st["rejected"].values())), name
        assert n == total  # every bar ends full: its total is what reached the stage
    assert bars["screen"][2] < bars["screen"][0]  # the screen rejected some: its kept count is smaller
    assert bars["facts"][0] == bars["screen"][2] < bars["tile"][0]  # and they never reached the facts
    assert re.search(r"^INFO pipelines\.executor: plan: 1 scene\(s\), \d+ window\(s\)", r.stderr, re.M)
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stderr)  # without the bars' cursor moves
    dash = re.findall(r"^Dask dashboard: (.*)$", plain, re.M)  # one line: the link, or why there is none
    assert len(dash) == 1 and (dash[0].startswith("http://") or "needs bokeh" in dash[0]), dash


def test_quiet_limited_build_prints_nothing_and_keeps_n_windows(tmp_path: Path) -> None:
    region = str(_region(tmp_path))
    r = _cli("-q", "build", region, "--limit", "5")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stderr  # no bars, no summary
    out = tmp_path / "out"
    m = json.loads((out / "manifest.json").read_text())
    c = m["counts"]
    assert m["limit"] == 5 and c["windows"] == 5 < c["windows_planned"]
    assert c["chips_kept"] + c["chips_rejected"] == 5
    ids = pq.read_table(out / "data", columns=["chip_id"]).column(0).to_pylist()
    assert len(ids) == c["chips_kept"]
    full_hash = load_region(Path(region)).config_hash()
    assert m["config_hash"] == full_hash  # the limit shapes no row: the config hash is the full build's
    # a smaller sample into the same folder would delete a finished task of this one: refused, one line
    r2 = _cli("build", region, "--limit", "2", "--no-progress")
    assert r2.returncode == 2 and r2.stderr.count("\n") == 1 and "--limit 2 would delete" in r2.stderr
    assert json.loads((out / "manifest.json").read_text())["limit"] == 5  # untouched


# -- build --dry-run ---------------------------------------------------------------------------------------


def test_dry_run_of_an_earthengine_region_searches_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenes and anchors from a loopback Earth Engine, text from an LLM that is never asked: the dry
    run's only requests are the scene search's, it writes nothing, and its figures follow the plan."""
    from pipelines.estimate import cost_inputs
    from pipelines.executor import plan
    from tests.servers import serve
    from tests.servers.earthengine import EEHandler, ee_server_attrs, request_log
    from tests.triplet_builder.earthengine.s1 import REGION_BBOX, s1_world

    monkeypatch.setenv("EE_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("EE_SERVICE_ACCOUNT_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rasters, catalogue = s1_world(tmp_path)
    with serve(EEHandler, **ee_server_attrs(rasters, catalogue)) as srv:
        raw = {
            "name": "ee_dry",
            "area": {"bbox": list(REGION_BBOX)},
            "years": [2017],
            "scenes": {"type": "earthengine", "orbit_direction": "descending", "pixel_size_m": 20},
            "embeddings": {"type": "earthengine"},
            "earthengine": {"url": srv.url, "project": "test-project", "backoff_s": 0.01},
            "text": {"writer": "llm", "llm": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
            "chip": {"size": 64, "pixel_size_m": 20},
            "output": {"dir": str(tmp_path / "out")},
            "cache_dir": str(tmp_path / "cache"),
        }
        region = tmp_path / "ee_dry.yaml"
        region.write_text(yaml.safe_dump(raw))
        code, out, err = _main(
            capsys, "build", str(region), "--dry-run", "--price-in", "1", "--price-out", "2"
        )
        kinds = [q.kind for q in request_log(srv)]
        p = plan(load_region(region))  # the same plan, made again for the expected figures
    assert code == 0, err
    assert kinds and "computePixels" not in kinds, kinds  # the search (listAssets) and discovery only
    assert set(kinds) <= {"discovery", "listAssets", "algorithms"}, kinds
    assert not (tmp_path / "out").exists()
    n = sum(len(t.windows) for t in p.tasks)
    assert n > 4
    fig = cost_inputs()
    assert f"windows:   {n:,} in {len(p.tasks)} task(s)" in out
    assert f"chips:     up to {n:,}" in out
    assert f"Earth Engine computePixels, scenes: {n:,} (one per window)" in out
    anchors = math.ceil(n * fig["earthengine"]["anchor_requests_per_chip"])
    assert f"Earth Engine computePixels, anchors: about {anchors:,}," in out
    assert f"up to {2 * n:,} requests" in out
    tin, tout = n * fig["llm"]["prompt_tokens_per_chip"], n * fig["llm"]["completion_tokens_per_chip"]
    assert f"up to {tin:,} in / {tout:,} out" in out
    assert f"cost up to {tin / 1e6 * 1 + tout / 1e6 * 2:,.2f} at 1 / 2 per million tokens" in out
    b = fig["build"]
    shard = n * (b["shard_fixed_bytes_per_chip"] + b["image_bytes_per_px"] * 64 * 64)
    assert 1e3 <= shard < 1e6 and f"up to {shard / 1e3:,.1f} KB of shards" in out


@pytest.mark.slow  # two LocalCluster builds of one tile
def test_a_full_build_resumes_a_limited_one(tmp_path: Path) -> None:
    region = str(_region(tmp_path, chips_per_task=10))
    assert _cli("-q", "build", region, "--limit", "15").returncode == 0
    first = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert first["limit"] == 15 and first["counts"]["tasks"] == 2  # one whole task of 10, one cut to 5
    r = _cli("-q", "build", region)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    c = m["counts"]
    assert m["limit"] is None and c["windows"] == c["windows_planned"] == first["counts"]["windows_planned"]
    assert c["tasks_reused"] == 1 and c["tasks_rerun"] == {"changed": 1}  # the cut task runs in full
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"]


def test_the_cards_text_quality_rechecked_on_the_workers_is_the_serial_one(
    built: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The build re-runs the checker on each shard on its workers (pipelines/executor.py `_recheck`);
    the manifest's report equals the one computed here, in this process, from the same shards."""
    from triplet_builder.text.quality import text_quality

    out, r = built
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    data = [f for f in m["files"] if f.startswith("data/")]
    assert m["text_quality"] == text_quality(out, data)
    assert m["text_quality"]["checker"]["rows_checked"] == m["counts"]["chips_kept"] > 0
