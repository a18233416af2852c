"""Peak memory of a build does not grow with the scene's size: the same region (the same chips) built on a
2,000 px and a 20,000 px scene (bench/memory.py) peaks within 1.5x; a ratio within one run, no absolute
limit and no timing."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow  # writes a 20,000 x 20,000 px scene and runs two builds (about 60 s)
def test_peak_memory_does_not_grow_with_scene_size(tmp_path: Path) -> None:
    from bench.memory import measure

    small, large = measure([2000, 20000], out=tmp_path)["runs"]
    assert small["windows"] == large["windows"] > 0  # the same chips: only the scene's size differs
    # a full read of the 20,000 px float32 scene alone would add 1,600 MB to a peak of a few hundred
    assert large["peak_rss_mb"] < 1.5 * small["peak_rss_mb"], (small, large)
