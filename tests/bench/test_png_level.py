"""bench/png_level.py: real chips, every level decoding to the same pixels, and its ratios' arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import png_level
from schemas.codec import PNG_COMPRESS_LEVEL


def test_real_chips_come_from_the_bundled_files() -> None:
    sets = png_level.real_chips(size=64, stride=64)
    one, pols1 = sets["1 pol"]
    two, pols2 = sets["2 pol (two dates)"]
    assert pols1 == ("VV",) and pols2 == ("VV", "VH")
    assert one and all(c.shape == (1, 64, 64) for c in one)
    assert two and all(c.shape == (2, 64, 64) for c in two)
    values = np.concatenate([c.ravel() for c in one + two])
    assert np.isfinite(values).mean() > 0.5  # read, not empty
    assert -40.0 < float(np.nanmedian(values)) < 10.0  # dB (the OPERA crop's linear gamma0 converted)


def test_report_ratios_are_against_level_6_and_the_codec_level() -> None:
    m = {
        "seconds": {1: 0.5, PNG_COMPRESS_LEVEL: 1.0, 6: 2.0},
        "bytes": {1: 1100, PNG_COMPRESS_LEVEL: 1001, 6: 1000},
        "pixels_identical": True,
    }
    r = png_level.report("x", 3, m)["levels"]
    assert r["6"]["speed_vs_level_6"] == 1.0 and r["6"]["bytes_vs_level_6_pct"] == 0.0
    assert r["1"]["speed_vs_level_6"] == 4.0 and r["1"]["bytes_vs_level_6_pct"] == 10.0
    assert r[str(PNG_COMPRESS_LEVEL)]["speed_vs_codec_level"] == 1.0
    assert r["1"]["speed_vs_codec_level"] == 2.0 and r[str(PNG_COMPRESS_LEVEL)]["bytes_vs_level_6_pct"] == 0.1


def test_main_writes_every_level_and_finds_the_pixels_identical(tmp_path: Path) -> None:
    out = tmp_path / "png.json"
    assert png_level.main(["--repeats", "1", "--size", "96", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["codec_level"] == PNG_COMPRESS_LEVEL
    for r in data["results"]:
        assert r["pixels_identical"] is True and r["chips"] > 0
        assert {"1", "4", "6", "9"} <= set(r["levels"])
        assert r["levels"]["6"]["bytes"] > 0
