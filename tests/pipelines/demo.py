"""The command line run from the repository root in a subprocess, and the bundled demo built by it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def build_demo(out: Path) -> Path:
    """The demo region built into `out` through the CLI (one worker, no progress bars)."""
    r = cli(
        "build",
        "pipelines/regions/demo.yaml",
        "--set",
        f"output.dir={out}",
        "--set",
        "workers=1",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    return out
