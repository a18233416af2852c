"""The chip codec, the one place shared by the builder, the trainer, predict and the exports: SAR pixel
values of any declared scale -> backscatter in dB (with nodata as a mask), and a chip's dB backscatter
<-> an 8-bit PNG with a validity alpha channel.

Scales (`Scale`): db = 10 log10(power), linear_power (sigma0 / gamma0 as a power ratio), amplitude =
sqrt(power). Nodata values and NaN are masks, never values: they become NaN and `valid` is False there.
Linear power and amplitude must be positive to have a dB value; zero or negative pixels are invalid.

One polarisation -> 'LA' (grey = the polarisation, alpha = valid mask); two polarisations (e.g. VV, VH)
-> 'RGBA' with R = first, G = second, B = first - second (the dB difference, i.e. the power ratio) and
A = valid mask. Each colour channel c is stretched linearly:

    code = round(255 * clip((dB - min_db[c]) / (max_db[c] - min_db[c]), 0, 1))
    dB   = min_db[c] + code / 255 * (max_db[c] - min_db[c])        (where alpha == 255)

The per-channel (min_db, max_db) actually used are returned (as float32 values, the precision of the
Parquet columns stretch_min_db / stretch_max_db), so absolute backscatter can always be recovered.
Invalid pixels are written as code 0 with alpha 0. The bytes are deterministic: Pillow writes no
timestamp chunk and the zlib level is fixed.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

PNG_COMPRESS_LEVEL = 4
"""Fixed zlib level: changing it changes the bytes (not the pixels) of every PNG, so a change bumps the
pipeline version (triplet_builder/__init__.py). Level 4 is zlib's cheapest lazy-matching level: on SAR
chips it encodes 1.4-3.5x faster than level 6 for the same bytes (+0.02 % on real 1-pol chips, -0.07 % on
2-pol, bench/RESULTS.md "The PNG's zlib level"); levels 1-3 are faster still but 6-9 % larger."""

_MIN_SPAN_DB = 0.1  # a percentile stretch narrower than this is widened (flat chips)


class Scale(str, Enum):
    """How the pixel values of a SAR source are expressed."""

    DB = "db"  # 10 * log10(power)
    LINEAR_POWER = "linear_power"  # sigma0 / gamma0 as a power ratio
    AMPLITUDE = "amplitude"  # sqrt(power)


def to_db(values: np.ndarray, scale: Scale, nodata: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(P, H, W) raw values -> ((P, H, W) float32 dB with NaN where invalid, (H, W) bool valid in ALL bands)."""
    v = np.asarray(values, dtype=np.float32)
    db: np.ndarray
    invalid = ~np.isfinite(v)
    if nodata is not None and np.isfinite(nodata):
        invalid |= v == np.float32(nodata)
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale is Scale.DB:
            db = v.copy()
        elif scale is Scale.LINEAR_POWER:
            invalid |= v <= 0
            db = 10.0 * np.log10(v)
        elif scale is Scale.AMPLITUDE:
            invalid |= v <= 0
            db = 20.0 * np.log10(v)
        else:  # pragma: no cover - enum is closed
            raise ValueError(f"unknown scale {scale}")
    valid = np.asarray(~invalid.any(axis=0))
    db = db.astype(np.float32, copy=False)
    db[:, ~valid] = np.nan
    return db, valid


def db_to_linear_power(db: np.ndarray) -> np.ndarray:
    return np.power(np.float32(10.0), db / np.float32(10.0))


def detect_scale(sample: np.ndarray) -> Scale:
    """Guess the scale of finite sample values: negatives exist only in dB; linear power of land and
    sea has a median well below 1; anything else positive with a large median is amplitude (DN)."""
    v = sample[np.isfinite(sample)]
    if v.size == 0:
        raise ValueError("no finite pixels to detect the scale from")
    if (v < 0).mean() > 0.01:
        return Scale.DB
    med = float(np.median(v))
    return Scale.LINEAR_POWER if med < 2.0 else Scale.AMPLITUDE


@dataclass(frozen=True, slots=True)
class Stretch:
    """How dB values are mapped to 8-bit codes.

    `fixed`: every chip uses [min_db, max_db] for polarisation channels and [ratio_min_db, ratio_max_db]
    for the difference channel (comparable across chips). `percentile`: per chip and channel, the
    [low_pct, high_pct] percentiles of the valid pixels (more contrast, values stored per row).
    """

    mode: Literal["fixed", "percentile"] = "fixed"
    min_db: float = -25.0
    max_db: float = 5.0
    ratio_min_db: float = 0.0
    ratio_max_db: float = 15.0
    low_pct: float = 2.0
    high_pct: float = 98.0

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "percentile"):
            raise ValueError(f"Stretch.mode must be 'fixed' or 'percentile', got {self.mode!r}")
        if not self.max_db > self.min_db:
            raise ValueError(f"Stretch needs max_db > min_db, got min_db={self.min_db}, max_db={self.max_db}")
        if not self.ratio_max_db > self.ratio_min_db:
            raise ValueError(
                f"Stretch needs ratio_max_db > ratio_min_db, got {self.ratio_min_db}, {self.ratio_max_db}"
            )
        if not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise ValueError(
                f"Stretch needs 0 <= low_pct < high_pct <= 100, got {self.low_pct}, {self.high_pct}"
            )


class EncodedChip(NamedTuple):
    """The result of `encode_chip` (unpacks as a 4-tuple)."""

    png: bytes
    channels: list[str]  # what each colour channel holds, e.g. ['VV', 'VH', 'VV-VH']
    min_db: list[float]  # per colour channel, the dB mapped to code 0 (float32-exact)
    max_db: list[float]  # per colour channel, the dB mapped to code 255 (float32-exact)


def _f32(x: float) -> float:
    """Round to float32 (the storage precision of the stretch columns) and back to a Python float."""
    return float(np.float32(x))


def _limits(
    values: np.ndarray, mask: np.ndarray, lo: float, hi: float, stretch: Stretch
) -> tuple[float, float]:
    """(min_db, max_db) of one channel; `lo`, `hi` are the fixed limits of that channel."""
    if stretch.mode == "fixed" or not mask.any():
        return _f32(lo), _f32(hi)
    p_lo, p_hi = np.percentile(values[mask].astype(np.float64), [stretch.low_pct, stretch.high_pct])
    if p_hi - p_lo < _MIN_SPAN_DB:
        mid = 0.5 * (p_lo + p_hi)
        p_lo, p_hi = mid - _MIN_SPAN_DB / 2, mid + _MIN_SPAN_DB / 2
    lo32, hi32 = _f32(p_lo), _f32(p_hi)
    if not hi32 > lo32:  # only possible for huge magnitudes; keep the contract max > min
        hi32 = float(np.nextafter(np.float32(lo32), np.float32(np.inf)))
    return lo32, hi32


def _to_codes(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H, W) dB -> (H, W) uint8 codes; NaN -> 0."""
    scaled = (values.astype(np.float64) - lo) / (hi - lo)
    codes = np.rint(255.0 * np.clip(scaled, 0.0, 1.0))
    return np.nan_to_num(codes, nan=0.0).astype(np.uint8)


def encode_chip(
    db: np.ndarray, valid: np.ndarray, polarisations: tuple[str, ...] | list[str], stretch: Stretch
) -> EncodedChip:
    """Encode (P, H, W) float32 dB (NaN where invalid) and a (H, W) bool mask as PNG bytes.

    A pixel is written as valid (alpha 255) only where `valid` is True and every polarisation is
    finite. Returns (png_bytes, channels, min_db, max_db).
    """
    arr = np.asarray(db)
    if arr.ndim != 3:
        raise ValueError(f"encode_chip expects db of shape (P, H, W), got {arr.shape}")
    n_pol, h, w = arr.shape
    pols = [str(p) for p in polarisations]
    if len(pols) != n_pol:
        raise ValueError(f"encode_chip got {n_pol} bands but {len(pols)} polarisation names {pols}")
    if n_pol not in (1, 2):
        raise ValueError(f"encode_chip supports 1 or 2 polarisations, got {n_pol} ({pols})")
    mask = np.asarray(valid, dtype=bool)
    if mask.shape != (h, w):
        raise ValueError(f"encode_chip: valid mask has shape {mask.shape}, expected {(h, w)}")
    mask = mask & np.isfinite(arr).all(axis=0)  # (H, W)

    channels = list(pols)
    planes = [arr[i] for i in range(n_pol)]  # each (H, W)
    fixed = [(stretch.min_db, stretch.max_db)] * n_pol
    if n_pol == 2:
        channels.append(f"{pols[0]}-{pols[1]}")
        planes.append(arr[0].astype(np.float64) - arr[1].astype(np.float64))
        fixed.append((stretch.ratio_min_db, stretch.ratio_max_db))

    mins: list[float] = []
    maxs: list[float] = []
    codes: list[np.ndarray] = []
    for plane, (lo_fixed, hi_fixed) in zip(planes, fixed, strict=True):
        lo, hi = _limits(plane, mask, lo_fixed, hi_fixed, stretch)
        c = _to_codes(plane, lo, hi)
        c[~mask] = 0
        codes.append(c)
        mins.append(lo)
        maxs.append(hi)
    alpha = np.where(mask, np.uint8(255), np.uint8(0))
    pixels = np.ascontiguousarray(np.stack([*codes, alpha], axis=-1))  # (H, W, 2) or (H, W, 4) uint8
    image = Image.fromarray(pixels)  # 'LA' for 2 channels, 'RGBA' for 4
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return EncodedChip(buf.getvalue(), channels, mins, maxs)


def decode_chip(png_bytes: bytes, min_db: list[float], max_db: list[float]) -> np.ndarray:
    """PNG bytes from `encode_chip` -> (P, H, W) float32 dB of the polarisations, NaN where alpha == 0.

    For a two-polarisation ('RGBA') chip only R and G (the polarisations) are returned; B is their
    difference. `min_db` / `max_db` are the per-channel values stored with the chip.
    """
    with Image.open(io.BytesIO(png_bytes)) as image:
        mode = image.mode
        if mode not in ("LA", "RGBA"):
            raise ValueError(f"decode_chip expects an 'LA' or 'RGBA' PNG from encode_chip, got mode {mode!r}")
        pixels = np.asarray(image)  # (H, W, 2) or (H, W, 4) uint8
    n_pol = 1 if mode == "LA" else 2
    n_colour = pixels.shape[-1] - 1
    if len(min_db) != n_colour or len(max_db) != n_colour:
        raise ValueError(
            f"decode_chip: a {mode} chip needs {n_colour} stretch values per side, "
            f"got {len(min_db)} min_db and {len(max_db)} max_db"
        )
    alpha = pixels[..., -1]
    out = np.empty((n_pol, *alpha.shape), dtype=np.float32)
    for c in range(n_pol):
        lo, hi = float(min_db[c]), float(max_db[c])
        out[c] = lo + pixels[..., c].astype(np.float64) / 255.0 * (hi - lo)
    out[:, alpha == 0] = np.nan
    return out


def to_rgb(image: Image.Image) -> Image.Image:
    """A chip PNG (or any 8-bit image) as the RGB input of a VLM: drop the alpha channel (the chips'
    valid-pixel mask, not a transparency to composite) and make it 3-channel RGB (L is replicated)."""
    if image.mode in ("LA", "La"):
        image = image.getchannel("L")
    elif image.mode in ("RGBA", "RGBa"):
        image = Image.merge("RGB", image.split()[:3])
    elif image.mode == "PA":
        image = image.convert("RGBA")
        image = Image.merge("RGB", image.split()[:3])
    elif image.mode.startswith("I;16") or image.mode in ("I", "F"):
        raise ValueError(f"image mode {image.mode} is not 8-bit; the shards hold 8-bit PNGs")
    return image if image.mode == "RGB" else image.convert("RGB")
