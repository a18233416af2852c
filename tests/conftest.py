"""Shared paths to the real sample files (copied from ../shared/data/real with their licences)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from triplet_builder.record import Backscatter, BandRef, GeorefKind, Scale, SceneRef

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
SPATIALIST = REAL / "spatialist"
PORT_TILE = SPATIALIST / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
OPERA = (
    REAL
    / "opera_rtc_crop"
    / "OPERA_L2_RTC-S1_T009-019294-IW2_20240123T084748Z_20240123T162136Z_S1A_30_v1.0_VH_cropped.tif"
)
SAFE_ZIP = (
    REAL / "pyrosar_s1_safe" / "S1A_IW_GRDH_1SDV_20150203T043109_20150203T043134_004454_00574F_6D00.zip"
)
AEF_WINDOW = REAL / "alphaearth_geotiff" / "aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"


@pytest.fixture
def real() -> Path:
    return REAL


def port_scene(*, dual_pol: bool = False, scene_id: str = "S1A__IW___D_20171210T054359") -> SceneRef:
    """The SceneRef of the real Port-Saint-Louis tile (the VV band doubles as 'VH' for dual-pol tests)."""
    bands = [BandRef(str(PORT_TILE), 1, "VV")]
    if dual_pol:
        bands.append(BandRef(str(PORT_TILE), 1, "VH"))
    return SceneRef(
        scene_id=scene_id,
        bands=tuple(bands),
        acquired=datetime(2017, 12, 10, 5, 43, 59, tzinfo=timezone.utc),
        acquired_source="filename",
        sensor="Sentinel-1A",
        mode="IW",
        orbit_direction="descending",
        scale=Scale.DB,
        scale_source="filename",
        backscatter=Backscatter.SIGMA0,
        georef=GeorefKind.AFFINE,
        crs="EPSG:32631",
        width=268,
        height=217,
        pixel_size_m=20.0,
        nodata=-99.0,
        product="GRD",
    )
