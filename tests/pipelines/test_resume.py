"""Resume is exact, end to end through the real CLI on a Dask LocalCluster (issue #10, points 1, 2 and 4).

A rerun after a change of `chips_per_task`, an interruption, a damaged shard or an unavailable service
finishes the SAME dataset as a fresh build, leaves no file the plan did not make, and never asks a paid
service again for work it already answered; a second build into a locked folder is refused in one line.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from pipelines.output import lock_path
from tests.conftest import ROOT
from tests.pipelines.test_build import cli, digest, region_file
from tests.servers.openai_compat import openai_server

pytestmark = pytest.mark.slow


def build(region: Path, *args: str) -> dict[str, Any]:
    r = cli("build", str(region), "--no-progress", "--workers", "1", *args)
    assert r.returncode == 0, r.stderr
    return dict(json.loads((Path(yaml_out(region)) / "manifest.json").read_text()))


def yaml_out(region: Path) -> str:
    import yaml

    return str(yaml.safe_load(region.read_text())["output"]["dir"])


def task_files(out: Path) -> set[str]:
    """Every file under the task folders (temporaries included)."""
    return {
        f.relative_to(out).as_posix()
        for d in ("data", "rejects", "_tasks")
        for f in (out / d).glob("*")
        if f.is_file()
    }


def assert_accounted(out: Path, m: dict[str, Any]) -> None:
    """Every planned window is once in the shards or the rejects; the manifest lists exactly what is on disk
    and its counts add up."""
    c = m["counts"]
    kept = pq.read_table(out / "data", columns=["chip_id"]).column("chip_id").to_pylist()
    rej = pq.read_table(
        sorted((out / "rejects").glob("*.parquet")), columns=["chip_id", "reason"]
    ).to_pylist()
    ids = kept + [r["chip_id"] for r in rej]
    assert len(ids) == len(set(ids)) == c["windows"]  # no duplicate, none lost
    assert len(kept) == c["chips_kept"] == sum(c["rows_per_split"].values())
    assert len(rej) == c["chips_rejected"] == sum(c["rejected_by_reason"].values())
    assert Counter(r["reason"] for r in rej) == Counter(c["rejected_by_reason"])
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"]
    on_disk = {f for f in task_files(out) if not f.startswith("_tasks/")}
    assert on_disk == set(m["files"]) | set(m["rejects_files"])
    assert c["shards"] == len(m["files"])
    assert len(list((out / "_tasks").glob("*"))) == c["tasks"] - c["tasks_failed"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[dict[str, str], dict[str, Any]]]:
    """Fresh builds with 512 (2 tasks) and 20 (4 tasks) chips per task: the datasets a resume must equal."""
    out = {}
    for cpt in (512, 20):
        tmp = tmp_path_factory.mktemp(f"fresh{cpt}")
        m = build(region_file(tmp, chips_per_task=cpt))
        assert_accounted(tmp / "out", m)
        out[cpt] = (digest(tmp / "out"), m)
    assert out[512][1]["counts"]["tasks"] == 2 and out[20][1]["counts"]["tasks"] == 4
    return out


def test_changing_chips_per_task_finishes_the_same_dataset(tmp_path: Path, fresh: Any) -> None:
    """The rows of a build rerun with another chips_per_task are the fresh build's, with no duplicate id and
    no shard of the old grouping left beside them (today: 136 chips from 96 windows, stray shards)."""
    build(region_file(tmp_path, chips_per_task=512))
    m = build(region_file(tmp_path, chips_per_task=20))
    out = tmp_path / "out"
    assert digest(out) == fresh[20][0]
    assert m["counts"]["tasks_rerun"] == {"changed": 2} and m["counts"]["tasks_reused"] == 0
    assert_accounted(out, m)
    m = build(region_file(tmp_path, chips_per_task=20))  # and a rerun of that reuses every task
    assert m["counts"]["tasks_reused"] == 4 and digest(out) == fresh[20][0]


def test_killed_build_resumes_with_another_chips_per_task(tmp_path: Path, fresh: Any) -> None:
    """What kill -9 leaves (two of four tasks finished with markers, a third's temporaries, no manifest),
    resumed with 512 chips per task: the fresh 512 build, nothing lost (today: 16 chips lost silently)."""
    build(region_file(tmp_path, chips_per_task=20))
    out = tmp_path / "out"
    for n in (2, 3):
        (out / "_tasks" / f"task-{n:05d}.json").unlink()
    (out / "data" / ".train-00002-000.parquet.tmp").write_bytes(b"PAR1 half a file")
    (out / "manifest.json").unlink()
    m = build(region_file(tmp_path, chips_per_task=512))
    assert digest(out) == fresh[512][0]
    assert not list(out.rglob("*.tmp"))
    assert_accounted(out, m)


def test_deleted_and_altered_shards_are_rebuilt(tmp_path: Path, fresh: Any) -> None:
    """A shard deleted after the build and one altered in place (same size) are found by the markers' sizes
    and SHA-256 and rebuilt (today: exit 0 and a manifest listing a missing file)."""
    build(region_file(tmp_path, chips_per_task=512))
    out = tmp_path / "out"
    (out / "data" / "train-00000-000.parquet").unlink()
    altered = out / "data" / "train-00001-000.parquet"
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    m = build(region_file(tmp_path, chips_per_task=512))
    assert m["counts"]["tasks_rerun"] == {"damaged": 2}
    assert digest(out) == fresh[512][0]
    assert_accounted(out, m)


def test_same_dataset_whatever_the_form_of_the_paths(tmp_path: Path, fresh: Any) -> None:
    """The region file and the command naming paths relatively, absolutely, with `..` and through a
    symlinked folder give byte-identical shards and one config hash; no row or manifest holds a folder."""
    regions = tmp_path / "regions"
    regions.mkdir()
    link = tmp_path / "linked"
    link.symlink_to(regions, target_is_directory=True)
    rel = os.path.relpath(ROOT / "data" / "demo", regions)
    region_file(
        regions,
        "rel.yaml",
        **{
            "scenes.paths": [f"{rel}/spatialist/*.tif"],
            "embeddings.root": f"{rel}/aef_synthetic",
            "output.dir": "out",
        },
    )
    region_file(regions, "abs.yaml", **{"output.dir": "out"})  # absolute data paths
    runs = {
        "relative": (os.path.relpath(regions / "rel.yaml", ROOT), "r1"),
        "absolute": (str(regions / "rel.yaml"), "r2"),
        "dotdot": (str(regions / ".." / "regions" / "rel.yaml"), "r3"),
        "symlink": (str(link / "rel.yaml"), "r4"),
        "absolute-in-file": (str(regions / "abs.yaml"), "r5"),
    }
    digests, hashes = {}, {}
    for name, (path, sub) in runs.items():
        out = tmp_path / sub
        r = cli("build", path, "--no-progress", "--workers", "1", "--set", f"output.dir={out}")
        assert r.returncode == 0, (name, r.stderr)
        digests[name] = digest(out)
        m = json.loads((out / "manifest.json").read_text())
        hashes[name] = m["config_hash"]
        text = (out / "manifest.json").read_text() + (out / "README.md").read_text()
        for f in (out / "data").glob("*.parquet"):
            t = pq.read_table(f, columns=["source_uris", "aef_source"]).to_pylist()
            text += json.dumps(t)
        for folder in (str(ROOT), str(tmp_path), "../", "spatialist/"):
            assert folder not in text, (name, folder)
    assert len(set(hashes.values())) == 1, hashes
    assert all(d == digests["relative"] for d in digests.values())
    assert digests["relative"] == fresh[512][0]


def test_a_second_build_into_a_locked_folder_is_refused(tmp_path: Path, fresh: Any) -> None:
    """While a build holds the folder's lock (held here by the test), another is refused in one line
    naming the folder, and the first build's output is untouched; the lock does not outlive its holder."""
    region = region_file(tmp_path)
    build(region)
    out = tmp_path / "out"
    before = digest(out)
    manifest = (out / "manifest.json").read_bytes()
    with FileLock(str(out / ".triplet-builder.lock"), timeout=0):
        assert lock_path(out) == out / ".triplet-builder.lock"
        r = cli("build", str(region), "--no-progress", "--workers", "1")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("error: another build is writing to") and str(out) in line
        other = region_file(tmp_path, "other.yaml", **{"chip.stride": 64})
        r = cli("build", str(other), "--no-progress", "--overwrite")
        assert r.returncode == 2 and "another build" in r.stderr
    assert digest(out) == before and (out / "manifest.json").read_bytes() == manifest
    m = build(region)
    assert m["counts"]["tasks_reused"] == 2


def test_transient_rejects_are_retried_and_paid_requests_are_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LLM server that answers 503 to the first captions: those chips are rejected `llm_unavailable`;
    the rerun against the server, available again, retries them (today: the tasks are reused and the
    rejects stay) and sends no request that was answered in the first run (the LLM cache)."""
    key_env = "SAR_TRIPLETS_TEST_RESUME_KEY"
    monkeypatch.setenv(key_env, "sk-test-resume")
    failing = 6
    with openai_server({"caption": ["503"] * failing}) as srv:
        llm = {
            "model": "loopback/test-model",
            "base_url": f"{srv.url}/v1",
            "api_key_env": key_env,
            "timeout_s": 10.0,
            "max_retries": 0,
            "backoff_s": 0.01,
        }
        region = region_file(
            tmp_path, **{"text.writer": "llm", "text.llm": llm, "cache_dir": str(tmp_path / "cache")}
        )
        first = build(region)
        assert first["counts"]["rejected_by_reason"].get("llm_unavailable") == failing
        answered = {e["last_user"] for e in srv.log if e["action"] == "good"}
        n_first = len(srv.log)
        second = build(region)
        again = srv.log[n_first:]
    c1, c2 = first["counts"], second["counts"]
    assert "llm_unavailable" not in c2["rejected_by_reason"]
    assert c2["tasks_rerun"].get("transient", 0) >= 1
    assert c2["chips_kept"] + c2["chips_rejected"] == c2["windows"] == c1["windows"]
    assert c2["chips_kept"] > c1["chips_kept"]
    assert again and not answered & {e["last_user"] for e in again}  # nothing paid twice
    assert {e["part"] for e in again} <= {"caption", "qa"}
    assert_accounted(tmp_path / "out", second)
