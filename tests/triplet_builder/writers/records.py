"""Fully populated ChipRecord objects for the writer tests, built from the real sample files.

Pixels: 32 x 32 chips of the real Sentinel-1A VV tile over Port-Saint-Louis-du-Rhone (spatialist, dB,
EPSG:32631, 20 m). Dual-polarisation records add a SEEDED SYNTHETIC 'VH' band (VV - 7 dB + noise) only
to exercise the RGBA path. Every third chip has its top-left triangle set to NaN (a scene edge).
Georeference: the real affine of the tile through triplet_builder.geo.SceneGeo (densified footprint).
Anchors: 16 real AlphaEarth codes (4 x 4 pixels of the 10 x 10 window, shifted per record).
Facts / caption / QA: derived from the chip's pixels in the shape of schemas/*.schema.json.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from shapely.geometry import Polygon

from schemas import CAPTION_FIELDS
from tests.conftest import port_scene
from triplet_builder.geo import scene_geo, utm_crs_for
from triplet_builder.record import (
    Anchors,
    ChipRecord,
    Georef,
    SceneRef,
    Window,
    chip_id_for,
)

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
S1_TILE = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
AEF_TILE = REAL / "alphaearth_geotiff" / "aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"

CHIP = 32
GRID = 4  # anchors per side: S = 16


def scene(dual_pol: bool = False) -> SceneRef:
    """The real tile as a SceneRef (dual_pol adds a second, synthetic-VH band reference)."""
    return port_scene(
        dual_pol=dual_pol,
        scene_id="S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db" + ("_dualpol_test" if dual_pol else ""),
    )


@cache
def _vv() -> np.ndarray:
    with rasterio.open(S1_TILE) as ds:
        return ds.read(1).astype(np.float32)  # (217, 268)


@cache
def _aef_codes() -> np.ndarray:
    with rasterio.open(AEF_TILE) as ds:
        return np.moveaxis(ds.read(), 0, -1).astype(np.int8)  # (10, 10, 64)


def _grid_cell(lon: float, lat: float) -> str:
    """A Major-TOM-like 10 km cell name (approximate; the real one comes from the georef stage)."""
    row = math.floor(lat * 111.32 / 10.0)
    col = math.floor(lon * 111.32 * math.cos(math.radians(lat)) / 10.0)
    return f"{abs(row)}{'U' if row >= 0 else 'D'}_{abs(col)}{'R' if col >= 0 else 'L'}"


def _facts(sc: SceneRef, db: np.ndarray, valid: np.ndarray, georef: Georef) -> dict[str, Any]:
    vv = db[0]
    v = vv[valid]
    water = vv < -18.0
    bright = vv > 0.0
    cells = []
    h, w = vv.shape
    for k in range(9):
        r, c = divmod(k, 3)
        sl = (slice(r * h // 3, (r + 1) * h // 3), slice(c * w // 3, (c + 1) * w // 3))
        cv = valid[sl]
        n = max(int(cv.sum()), 1)
        cells.append(
            {
                "cell": k + 1,
                "water_fraction": round(float((water[sl] & cv).sum()) / n, 4),
                "bright_fraction": round(float((bright[sl] & cv).sum()) / n, 4),
                "valid_fraction": round(float(cv.mean()), 4),
            }
        )
    n_valid = max(int(valid.sum()), 1)
    return {
        "version": "1.0",
        "chip": {
            "width_px": w,
            "height_px": h,
            "pixel_size_m": georef.pixel_size_m,
            "width_m": w * georef.pixel_size_m,
            "height_m": h * georef.pixel_size_m,
        },
        "acquisition": {
            "sensor": sc.sensor,
            "mode": sc.mode,
            "date": sc.acquired.date().isoformat(),
            "time_utc": sc.acquired.strftime("%H:%M:%S"),
            "year": sc.year,
            "season": "winter",
            "orbit_direction": sc.orbit_direction,
            "polarisations": list(sc.polarisations),
            "backscatter": sc.backscatter.value,
        },
        "location": {
            "centre_lon": georef.centre_lon,
            "centre_lat": georef.centre_lat,
            "grid_cell": georef.grid_cell,
        },
        "place": {
            "name": "Port-Saint-Louis-du-Rhône",
            "admin1": "Provence-Alpes-Côte d'Azur",
            "admin2": "Bouches-du-Rhône",
            "country": "France",
            "country_code": "FR",
            "population": 8500,
            "distance_km": 1.2,
            "direction": "S",
            "source": "geonames-cities1000",
        },
        "surface": {
            "valid_fraction": round(float(valid.mean()), 4),
            "water_fraction": round(float((water & valid).sum()) / n_valid, 4),
            "land_fraction": round(1.0 - float((water & valid).sum()) / n_valid, 4),
            "bright_fraction": round(float((bright & valid).sum()) / n_valid, 4),
            "water_threshold_db": -18.0,
            "bright_threshold_db": 0.0,
            "mean_db": round(float(v.mean()), 3),
            "std_db": round(float(v.std()), 3),
            "cells": cells,
        },
        "detections": {"detector": {"name": "cfar", "pfa": 1e-6}, "items": []},
        "objects": [],
    }


def make_record(index: int, split: str, *, dual_pol: bool = False) -> ChipRecord:
    """Chip number `index` (row-major over the tile's 8 x 6 grid of 32 px chips), fully populated."""
    sc = scene(dual_pol)
    n_cols = sc.width // CHIP
    row, col = divmod(index % (n_cols * (sc.height // CHIP)), n_cols)
    window = Window(col * CHIP, row * CHIP, CHIP, CHIP, CHIP, CHIP)
    vv = _vv()[window.row_off : window.row_off + CHIP, window.col_off : window.col_off + CHIP].copy()
    bands = [vv]
    if dual_pol:
        rng = np.random.default_rng(index)
        bands.append((vv - 7.0 + rng.normal(0.0, 1.0, vv.shape)).astype(np.float32))
    db = np.stack(bands).astype(np.float32)  # (P, 32, 32)
    valid = np.ones((CHIP, CHIP), dtype=bool)
    if index % 3 == 0:
        yy, xx = np.mgrid[0:CHIP, 0:CHIP]
        valid &= (yy + xx) >= CHIP // 2
    db[:, ~valid] = np.nan

    geo = scene_geo(sc)
    lon, lat = geo.window_outline(window, per_edge=8)
    footprint = Polygon(np.column_stack([lon, lat]))
    c_lon, c_lat = geo.pixel_to_lonlat(
        np.array([window.row_off + CHIP / 2]), np.array([window.col_off + CHIP / 2])
    )
    xmin, ymin, xmax, ymax = shapely.bounds(footprint).tolist()
    georef = Georef(
        footprint_wkb=shapely.to_wkb(footprint),
        bbox=(xmin, ymin, xmax, ymax),
        centre_lon=float(c_lon[0]),
        centre_lat=float(c_lat[0]),
        native_crs=sc.crs,
        transform=geo.affine_of_window(window),
        pixel_size_m=20.0,
        grid_cell=_grid_cell(float(c_lon[0]), float(c_lat[0])),
        utm_crs=utm_crs_for(float(c_lon[0]), float(c_lat[0])),
    )

    shift = index % (10 - 2 * GRID + 2)
    pix = _aef_codes()[shift : shift + 2 * GRID : 2, shift : shift + 2 * GRID : 2]  # (4, 4, 64)
    codes = pix.reshape(GRID * GRID, 64).copy()  # (16, 64) int8
    anchor_valid = np.ones(GRID * GRID, dtype=bool)  # (16,)
    if index % 4 == 1:
        codes[5] = -128
        anchor_valid[5] = False
    gy, gx = np.meshgrid((np.arange(GRID) + 0.5) / GRID, (np.arange(GRID) + 0.5) / GRID, indexing="ij")
    positions = np.column_stack([gy.ravel(), gx.ravel()]).astype(np.float32)  # (16, 2)
    a_lon, a_lat = geo.chip_pixel_to_lonlat(window, positions[:, 0], positions[:, 1])
    anchors = Anchors(
        codes=codes,
        valid=anchor_valid,
        positions=positions,
        lonlat=np.column_stack([a_lon, a_lat]).astype(np.float64),  # (16, 2)
        year=2017,
        source=f"cog:{AEF_TILE.parent.name}",
        synthetic=False,
    )

    facts = _facts(sc, db, valid, georef)
    surface = facts["surface"]
    fields: dict[str, str | None] = dict.fromkeys(CAPTION_FIELDS)
    fields["terrain"] = (
        f"A Sentinel-1A scene 1.2 km south of Port-Saint-Louis-du-Rhône, France, "
        f"{round(100 * surface['land_fraction'])} % land."
    )
    fields["water"] = f"Smooth water covers {round(100 * surface['water_fraction'])} % of the valid area."
    fields["buildings"] = f"Strong scatterers cover {round(100 * surface['bright_fraction'])} % of the chip."
    caption = " ".join(v for v in fields.values() if v)
    qa = [
        {"task": "counting", "question": "How many bright point targets are in the image?", "answer": "0"},
        {"task": "localization", "question": "Which grid cells hold bright point targets?", "answer": "None"},
    ]
    return ChipRecord(
        chip_id=chip_id_for(sc.scene_id, window),
        scene=sc,
        window=window,
        task_id=7,
        db=db,
        valid=valid,
        georef=georef,
        anchors=anchors,
        facts=facts,
        caption=caption,
        caption_fields=fields,
        qa=qa,
        text_generator="offline/1.0",
        prompt_version="templates-1.0",
        split=split,
    )


def make_records(n: int = 20, splits: tuple[str, ...] = ("train", "validation")) -> list[ChipRecord]:
    """`n` kept records; splits alternate in blocks of 3 (like spatial blocks); every other is dual-pol."""
    return [make_record(i, splits[(i // 3) % len(splits)], dual_pol=i % 2 == 1) for i in range(n)]


def make_rejects(n: int = 3) -> list[ChipRecord]:
    """`n` rejected records: the first without a footprint (rejected before georeferencing)."""
    out = []
    for i in range(n):
        rec = make_record(40 + i, "train")
        if i == 0:
            rec.georef = None
            rec.reject("tile", "nodata", "valid fraction 0.12 below 0.5")
        else:
            rec.reject("filter", "inconsistent_text", f"caption says {i} targets, facts have 0")
        out.append(rec)
    return out
