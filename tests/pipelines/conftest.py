"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.demo import build_demo


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo built once through the CLI; tests that change a build work on a copy of it."""
    return build_demo(tmp_path_factory.mktemp("demo_cli") / "out")
