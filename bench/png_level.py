"""Benchmark: the chip PNG's zlib level, seconds and bytes, on real Sentinel-1 chips, in one run.

The chip codec (schemas/codec.py) fixes one zlib level for every PNG; the level changes the bytes of every
PNG and never its pixels. This encodes the same chips at each level (interleaved repeats, so a noisy
machine slows every level alike), checks that every level decodes to the same pixels, and reports, per
level, the encoding time and the bytes against level 6 (the level before pipeline 0.2.0) and against the
codec's level now (`PNG_COMPRESS_LEVEL`).

The chips are 128 x 128 px windows (stride 40 px) of the repository's real files (tests/data/real/SOURCES.md):
- `1 pol`: the three Sentinel-1 VV dB tiles of the Rhone delta (spatialist) and the OPERA RTC VH crop
  (linear gamma0, converted to dB), as 'LA' PNGs (one polarisation and the valid mask);
- `2 pol (two dates)`: two dates of one Rhone tile stacked as if VV and VH, as 'RGBA' PNGs (VV, VH,
  VV - VH, mask). Real speckle and texture, but NOT a real VV / VH pair: no dual-pol raster is bundled.

    python -m bench.png_level                 # writes bench/out/png_level.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image

from schemas.codec import PNG_COMPRESS_LEVEL, Stretch, encode_chip

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
OUT = ROOT / "bench" / "out"
LEVELS = (1, 2, 3, 4, 5, 6, 9)
BEFORE = 6  # the level of pipeline 0.1.0


def _db(path: Path) -> np.ndarray:
    """(H, W) float32 dB of a real file (the OPERA RTC crop is linear gamma0)."""
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True).astype(np.float32).filled(np.nan)
    if "OPERA" in path.name:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (10.0 * np.log10(np.where(a > 0, a, np.nan))).astype(np.float32)
    return a


def _windows(a: np.ndarray, size: int, stride: int) -> list[np.ndarray]:
    h, w = a.shape[-2:]
    return [
        a[..., r : r + size, c : c + size]
        for r in range(0, h - size + 1, stride)
        for c in range(0, w - size + 1, stride)
    ]


def real_chips(size: int = 128, stride: int = 40) -> dict[str, tuple[list[np.ndarray], tuple[str, ...]]]:
    """{set name: ((P, H, W) dB chips, polarisations)} from the repository's real files."""
    rhone = sorted((REAL / "spatialist").glob("*.tif"))
    opera = sorted((REAL / "opera_rtc_crop").glob("*.tif"))
    one = [c[None] for p in [*rhone, *opera] for c in _windows(_db(p), size, stride)]
    a, b = _db(rhone[0]), _db(rhone[-1])
    two = _windows(np.stack([a, b - 7.0]), size, stride)  # the second date lowered to VH-like levels
    return {"1 pol": (one, ("VV",)), "2 pol (two dates)": (two, ("VV", "VH"))}


def _pixels(chips: list[np.ndarray], pols: tuple[str, ...]) -> list[np.ndarray]:
    """The (H, W, C) uint8 arrays the codec hands to PNG (its stretch and mask), once."""
    out = []
    for c in chips:
        png = encode_chip(c, np.isfinite(c).all(axis=0), pols, Stretch()).png
        out.append(np.asarray(Image.open(io.BytesIO(png))))
    return out


def _encode(arr: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=level)
    return buf.getvalue()


def measure(pixels: list[np.ndarray], levels: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Seconds (best of `repeats`, levels interleaved) and bytes per level; the pixels of every level
    decoded and compared with the input."""
    seconds = {lv: float("inf") for lv in levels}
    sizes = {lv: 0 for lv in levels}
    for _ in range(repeats):
        for lv in levels:
            t0 = time.perf_counter()
            encoded = [_encode(a, lv) for a in pixels]
            seconds[lv] = min(seconds[lv], time.perf_counter() - t0)
            sizes[lv] = sum(len(e) for e in encoded)
    same = all(
        np.array_equal(np.asarray(Image.open(io.BytesIO(_encode(a, lv)))), a) for lv in levels for a in pixels
    )
    return {"seconds": seconds, "bytes": sizes, "pixels_identical": same}


def report(name: str, chips: int, m: dict[str, Any]) -> dict[str, Any]:
    s, b = m["seconds"], m["bytes"]
    rows = {
        str(lv): {
            "seconds": round(s[lv], 4),
            "bytes": b[lv],
            f"speed_vs_level_{BEFORE}": round(s[BEFORE] / s[lv], 2),
            f"bytes_vs_level_{BEFORE}_pct": round(100.0 * (b[lv] / b[BEFORE] - 1.0), 2),
            "speed_vs_codec_level": round(s[PNG_COMPRESS_LEVEL] / s[lv], 2),
        }
        for lv in s
    }
    return {"set": name, "chips": chips, "pixels_identical": m["pixels_identical"], "levels": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per level (best kept)")
    ap.add_argument("--size", type=int, default=128, help="chip size in px")
    ap.add_argument("--out", type=Path, default=OUT / "png_level.json")
    args = ap.parse_args(argv)
    levels = tuple(sorted({*LEVELS, PNG_COMPRESS_LEVEL}))
    results = []
    for name, (chips, pols) in real_chips(args.size).items():
        r = report(name, len(chips), measure(_pixels(chips, pols), levels, args.repeats))
        results.append(r)
        print(f"{name}: {r['chips']} chips, pixels identical at every level: {r['pixels_identical']}")
        for lv, row in r["levels"].items():
            mark = " <- codec" if int(lv) == PNG_COMPRESS_LEVEL else ""
            print(
                f"  level {lv}: {row[f'speed_vs_level_{BEFORE}']:.2f}x the speed of level {BEFORE}, "
                f"bytes {row[f'bytes_vs_level_{BEFORE}_pct']:+.2f} %{mark}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"codec_level": PNG_COMPRESS_LEVEL, "results": results}, indent=1))
    return 0 if all(r["pixels_identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
