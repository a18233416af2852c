"""The output folder (pipelines/output.py, issue #10 points 2 and 3): a folder holding files this project
did not write is refused, with or without --overwrite, and nothing in it is touched; --overwrite deletes
a previous build's files only; the lock refuses a second build and does not outlive a killed holder."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from pipelines.output import build_lock, check_output, claim_output, foreign_entries, lock_path
from pipelines.plan import BuildError
from tests.conftest import ROOT
from triplet_builder.config import load_region

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def source_tree(root: Path) -> Path:
    """A folder that looks like a checkout: its own README.md, code, a data/ folder, a .git folder."""
    root.mkdir()
    (root / "README.md").write_text("# my project\n\nNot a dataset card.\n")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hello')\n")
    (root / "data").mkdir()
    (root / "data" / "notes.txt").write_text("keep me\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def fake_build(out: Path, config_hash: str) -> None:
    """The files a finished build leaves (names and recognisable content; the rows do not matter here)."""
    (out / "data").mkdir(parents=True)
    (out / "rejects").mkdir()
    (out / "_tasks").mkdir()
    (out / "data" / "train-00000-000.parquet").write_bytes(b"PAR1")
    (out / "rejects" / "rejects-00000.parquet").write_bytes(b"PAR1")
    (out / "_tasks" / "task-00000.json").write_text(json.dumps({"config_hash": config_hash, "task_id": 0}))
    manifest = {"config_hash": config_hash, "pipeline_version": "0.1.0", "files": []}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "README.md").write_text(
        f"---\nlicense: cc-by-4.0\n---\n# SAR triplets\n- Config hash: `{config_hash}`\n"
    )
    (out / ".triplet-builder.lock").write_text("")


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_folder_is_refused_and_untouched(tmp_path: Path, overwrite: bool) -> None:
    """Today --overwrite deletes data/ and README.md of any folder (tracked files of a source tree)."""
    target = source_tree(tmp_path / "checkout")
    before = snapshot(target)
    r = cli(
        "build", str(DEMO), "--no-progress", "--set", f"output.dir={target}", *(["--overwrite"] * overwrite)
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: output") and str(target) in line and "did not write" in line
    assert "README.md" in line
    assert snapshot(target) == before and not (target / ".triplet-builder.lock").exists()


def test_a_folder_with_only_its_own_readme_is_refused(tmp_path: Path) -> None:
    """Today the build silently replaces a folder's own README.md with the dataset card."""
    target = tmp_path / "docs"
    target.mkdir()
    (target / "README.md").write_text("# notes\n")
    r = cli("build", str(DEMO), "--no-progress", "--set", f"output.dir={target}")
    assert r.returncode == 2 and "README.md" in r.stderr and "Traceback" not in r.stderr
    assert (target / "README.md").read_text() == "# notes\n" and sorted(target.iterdir()) == [
        target / "README.md"
    ]


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, overwrite: bool) -> None:
    target = tmp_path / "out.txt"
    target.write_text("a file\n")
    r = cli(
        "build", str(DEMO), "--no-progress", "--set", f"output.dir={target}", *(["--overwrite"] * overwrite)
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert str(target) in line and "is a file" in line
    assert target.read_text() == "a file\n"


def test_a_previous_build_is_recognised_and_overwrite_deletes_only_its_files(tmp_path: Path) -> None:
    cfg = load_region(DEMO, {"output.dir": str(tmp_path / "out")})
    out = tmp_path / "out"
    fake_build(out, "0123456789abcdef")
    assert foreign_entries(out) == []
    with pytest.raises(BuildError, match="another config"):
        claim_output(check_output(cfg, overwrite=False), cfg, overwrite=False)
    (out / "data" / "mine.csv").write_text("x\n")  # someone's file inside the build's data/
    with pytest.raises(BuildError, match=r"did not write \(data/mine.csv\)"):
        check_output(cfg, overwrite=True)
    (out / "data" / "mine.csv").unlink()
    card = out / "README.md"
    card.write_text("# someone's README, not the card of 0123456789abcdef's build\n")
    assert foreign_entries(out) == ["README.md"]
    fake_card = "---\n---\n- Config hash: `0123456789abcdef`\n"
    card.write_text(fake_card)
    claim_output(check_output(cfg, overwrite=True), cfg, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".triplet-builder.lock"]  # only the lock file stays


def test_a_manifest_of_another_tool_is_foreign(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 3, "entries": []}))
    assert foreign_entries(tmp_path) == ["manifest.json"]


def test_the_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with FileLock(str(lock_path(tmp_path)), timeout=0):
        with pytest.raises(BuildError, match=f"another build is writing to {tmp_path}"):
            with build_lock(tmp_path):
                pass
    with build_lock(tmp_path):  # free again
        pass


def test_a_killed_holder_does_not_leave_the_folder_locked(tmp_path: Path) -> None:
    """The lock is the OS's (flock): a build killed with SIGKILL cannot release it, and the OS does."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1], timeout=0); l.acquire();"
            " print('locked', flush=True); time.sleep(600)",
            str(lock_path(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BuildError, match="another build"):
            with build_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with build_lock(tmp_path):
        pass


def test_the_index_and_the_preview_of_a_build_are_its_own(tmp_path: Path) -> None:
    from pipelines.output import foreign_entries

    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text(
        json.dumps({"config_hash": "abc", "pipeline_version": "x", "files": []})
    )
    (out / "metadata.parquet").write_bytes(b"PAR1")
    (out / "preview.html").write_text("<html></html>")
    assert foreign_entries(out) == []
    (out / "notes.txt").write_text("mine")
    assert foreign_entries(out) == ["notes.txt"]
