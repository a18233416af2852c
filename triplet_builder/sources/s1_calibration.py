"""Sentinel-1 GRD radiometric calibration: digital numbers -> sigma0 (linear power) with the product's LUT.

sigma0(i, j) = DN(i, j)^2 / A_sigma(i, j)^2, A_sigma bilinearly interpolated from the `sigmaNought`
vectors of annotation/calibration/calibration-*.xml (ESA, "Sentinel-1 Radiometric Calibration of Level-1
Products", ESA-EOPG-CSCOP-TN-0002). No thermal-noise removal.

Why not GDAL's `SENTINEL1_CALIB:SIGMA0:` subdataset: GDAL's SAFE driver (frmts/safe/safedataset.cpp,
checked in 3.10 and on master) lists and opens the calibrated SIGMA0 / BETA0 / GAMMA subdatasets for SLC
products only; for GRD it lists `UNCALIB` alone and answers "Measurement bands not found" to a SIGMA0
request. So the pixels are still read through GDAL's SENTINEL1 driver (the `UNCALIB` subdataset, which also
carries the annotation's GCPs), and the LUT is applied here, in this one place.
"""

from __future__ import annotations

import functools
import re
import zipfile
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject
from rasterio.windows import Window as RioWindow

from triplet_builder.record import BandRef, Window


@dataclass(frozen=True, slots=True)
class CalibratedBandRef(BandRef):
    """A SAFE GRD band: `uri` is GDAL's `SENTINEL1_CALIB:UNCALIB:<manifest>:<swath>_<pol>:AMPLITUDE` (digital
    numbers); `calibration` the path of its calibration XML (a file, or /vsizip/<zip>/<member>)."""

    calibration: str = ""


def uncalibrated_path(manifest: str, swath: str, pol: str) -> str:
    """GDAL's path of one polarisation's digital numbers through the SENTINEL1 driver."""
    return f"SENTINEL1_CALIB:UNCALIB:{manifest}:{swath}_{pol}:AMPLITUDE"


_VSIZIP = re.compile(r"^/vsizip/(?P<zip>.+?\.zip)/(?P<member>.+)$", re.IGNORECASE)


def _read_bytes(path: str) -> bytes:
    if m := _VSIZIP.match(path):
        with zipfile.ZipFile(m["zip"]) as zf:
            return zf.read(m["member"])
    with open(path, "rb") as fh:
        return fh.read()


@dataclass(frozen=True)
class SigmaLut:
    """The sigmaNought LUT: values (L, K) at image lines (L,) and pixels (K,)."""

    lines: np.ndarray
    pixels: np.ndarray
    values: np.ndarray

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(R, C) A_sigma at image rows (R,) x cols (C,): linear in pixel along each vector, then linear in
        line between vectors (bilinear on the LUT grid); clamped at the edges."""
        cols = np.asarray(cols, dtype=np.float64)
        rows = np.asarray(rows, dtype=np.float64)
        per_line = np.stack([np.interp(cols, self.pixels, v) for v in self.values])  # (L, C)
        i = np.clip(np.searchsorted(self.lines, rows, side="right") - 1, 0, len(self.lines) - 2)  # (R,)
        span = self.lines[i + 1] - self.lines[i]
        t = np.clip((rows - self.lines[i]) / span, 0.0, 1.0)[:, None]  # (R, 1)
        return per_line[i] * (1.0 - t) + per_line[i + 1] * t  # (R, C)


@functools.lru_cache(maxsize=8)
def sigma_lut(path: str) -> SigmaLut:
    """Parse a calibration XML once per process. Raises ValueError naming the file when it has no vectors."""
    root = ET.fromstring(_read_bytes(path))
    lines: list[float] = []
    rows: list[np.ndarray] = []
    pixels: np.ndarray | None = None
    for vec in root.iter("calibrationVector"):
        px = np.array((vec.findtext("pixel") or "").split(), dtype=np.float64)
        sig = np.array((vec.findtext("sigmaNought") or "").split(), dtype=np.float64)
        if px.size == 0 or px.size != sig.size:
            raise ValueError(
                f"{path}: a calibrationVector has {px.size} pixels and {sig.size} sigmaNought values"
            )
        if pixels is None:
            pixels = px
        # GRD vectors share one pixel grid; put any other onto it so the LUT is a grid
        rows.append(sig if np.array_equal(px, pixels) else np.interp(pixels, px, sig))
        lines.append(float(vec.findtext("line") or "nan"))
    if pixels is None or len(lines) < 2:
        raise ValueError(f"{path}: fewer than two calibrationVector entries; the product is incomplete")
    return SigmaLut(np.asarray(lines), pixels, np.stack(rows))


def calibrate_sigma0(dn: np.ndarray, lut: SigmaLut, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(R, C) float32 sigma0 (linear power) of digital numbers at image rows x cols; NaN where dn is NaN."""
    a = lut.at(rows, cols)  # (R, C)
    d = np.asarray(dn, dtype=np.float64)
    return (d * d / (a * a)).astype(np.float32)


def read_calibrated(ds: object, band: CalibratedBandRef, w: Window) -> np.ndarray:
    """(H, W) float32 sigma0 of a chip window (NaN where nodata), calibrated at the native pixels and THEN
    averaged to the output size, so a resampled pixel is the mean power, not the power of a mean DN."""
    rw = RioWindow(w.col_off, w.row_off, w.width, w.height)
    dn = ds.read(band.band, window=rw, masked=True)  # type: ignore[attr-defined]  # (h, w) native
    dn = np.ma.filled(dn.astype(np.float32), np.nan)
    rows = w.row_off + np.arange(dn.shape[0], dtype=np.float64)
    cols = w.col_off + np.arange(dn.shape[1], dtype=np.float64)
    sigma0 = calibrate_sigma0(dn, sigma_lut(band.calibration), rows, cols)  # (h, w)
    if (w.out_width, w.out_height) == (w.width, w.height):
        return sigma0
    out = np.full((w.out_height, w.out_width), np.nan, dtype=np.float32)
    reproject(
        sigma0,
        out,
        src_transform=Affine.identity(),
        dst_transform=Affine.scale(w.width / w.out_width, w.height / w.out_height),
        src_crs="EPSG:3857",
        dst_crs="EPSG:3857",  # the same CRS on both sides: a pure pixel-grid average, no projection
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.average,
    )
    return out
