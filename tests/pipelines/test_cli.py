"""The CLI's `build` end to end in the quick subset: one real demo tile, one Dask worker (a few
seconds). What the command prints, the manifest and the shards must agree, every window is accounted
for, and kept chips of different splits never share ground; a bad region file ends in one line.
(tests/pipelines/test_build.py covers the whole demo, resume and every bad input: slow.)"""

from __future__ import annotations

import itertools
import json
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
