"""A decimated read of a whole scene, in dB: the scene-level statistics (the Otsu water split) that every
chip of the scene must share, whichever worker reads which chip."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Resampling

from schemas.codec import to_db
from triplet_builder.record import SceneRef
from triplet_builder.sources.s1_calibration import CalibratedBandRef, calibrate_sigma0, sigma_lut


def scene_db_sample(scene: SceneRef, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """((P, h, w) float32 dB with NaN where invalid, (h, w) bool valid) of the whole scene, nearest-decimated
    to at most `max_side` pixels a side (deterministic). Raises ValueError for virtual (ee://) scenes,
    which have no file to sample."""
    if any(b.uri.startswith("ee://") for b in scene.bands):
        raise ValueError(
            f"scene {scene.scene_id} is read window by window from Earth Engine: no scene sample"
        )
    f = max(1.0, max(scene.width, scene.height) / max_side)
    h, w = max(1, round(scene.height / f)), max(1, round(scene.width / f))
    planes = []
    for band in scene.bands:
        with rasterio.open(band.uri) as ds:
            arr = ds.read(band.band, out_shape=(h, w), resampling=Resampling.nearest, masked=True)
            plane = np.ma.filled(arr.astype(np.float32), np.nan)  # (h, w)
            if isinstance(band, CalibratedBandRef):
                rows = np.floor((np.arange(h) + 0.5) * ds.height / h)
                cols = np.floor((np.arange(w) + 0.5) * ds.width / w)
                plane = calibrate_sigma0(plane, sigma_lut(band.calibration), rows, cols)
        planes.append(plane)
    return to_db(np.stack(planes), scene.scale, scene.nodata)
