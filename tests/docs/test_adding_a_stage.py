"""docs/adding-a-stage.md runs as written: its `python file=NAME` blocks are saved as files of an empty
folder, its other `python` blocks run there in order in one namespace; its YAML and TOML show what runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "adding-a-stage.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, code) of every fenced block, in order."""
    return [(m[1], m[2].strip(), m[3]) for m in FENCE.finditer(GUIDE.read_text())]


def test_the_guides_code_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, Any] = {"__name__": "guide"}
    ran = 0
    try:
        for lang, info, code in blocks():
            if lang != "python":
                continue
            if info.startswith("file="):
                (tmp_path / info.removeprefix("file=")).write_text(code)
            else:
                exec(compile(code, f"{GUIDE.name} block {ran}", "exec"), namespace)
                ran += 1
    finally:
        sys.modules.pop("my_stages", None)
    assert ran >= 2 and (tmp_path / "my_stages.py").is_file()
    assert "'seen': 4" in capsys.readouterr().out  # the stats it prints: the four chips reached the stage
    shown = next(yaml.safe_load(code) for lang, _, code in blocks() if lang == "yaml")
    assert shown["stages"] == namespace["stages"]  # the YAML shown is the entry that ran
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    toml = tomllib.loads(next(code for lang, _, code in blocks() if lang == "toml"))
    assert toml["project"]["entry-points"]["triplet_builder.stages"] == {
        "db_percentiles": "my_stages:DbPercentiles"
    }
