"""A task's key names the pipeline version, so a rerun after an upgrade that changes rows (a new PNG zlib
level, a new caption template) runs every task again instead of reusing the old version's shards under
the new version's manifest."""

from __future__ import annotations

import pytest

import pipelines.resume as resume
from pipelines.resume import task_key
from tests.triplet_builder.writers.records import scene
from triplet_builder import __version__
from triplet_builder.record import Window

WINDOWS = [Window(0, 0, 32, 32, 32, 32), Window(32, 0, 32, 32, 32, 32)]


def test_the_key_changes_with_the_pipeline_version(monkeypatch: pytest.MonkeyPatch) -> None:
    now = task_key("0123456789abcdef", 3, scene(), WINDOWS)
    assert task_key("0123456789abcdef", 3, scene(), WINDOWS) == now  # deterministic
    monkeypatch.setattr(resume, "__version__", "0.1.0")
    older = task_key("0123456789abcdef", 3, scene(), WINDOWS)
    assert __version__ != "0.1.0" and older != now


def test_the_key_still_changes_with_what_shapes_the_rows() -> None:
    base = task_key("0123456789abcdef", 3, scene(), WINDOWS)
    assert task_key("fedcba9876543210", 3, scene(), WINDOWS) != base
    assert task_key("0123456789abcdef", 4, scene(), WINDOWS) != base
    assert task_key("0123456789abcdef", 3, scene(dual_pol=True), WINDOWS) != base
    assert task_key("0123456789abcdef", 3, scene(), WINDOWS[:1]) != base
