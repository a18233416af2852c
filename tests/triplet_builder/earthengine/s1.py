"""A small Sentinel-1 world for the loopback server: real spatialist VV tiles (sigma0 dB, 20 m,
EPSG:32631) made dual-pol, and a catalogue of COPERNICUS/S1_GRD-shaped images, some of which every
filter of the search must drop."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from tests.conftest import PORT_TILE, SPATIALIST
from tests.servers.earthengine import Raster, s1_asset

COLLECTION = "COPERNICUS/S1_GRD"
PORT_ID = "S1A_IW_GRDH_1SDV_20171210T054359_20171210T054424_019648_021647_AAAA"
CAMARGUE_TILE = SPATIALIST / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
CAMARGUE_ID = "S1A_IW_GRDH_1SDV_20170309T054356_20170309T054421_015623_019AF1_BBBB"
# inside the Port-Saint-Louis tile (4.7825..4.8498 E, 43.3649..43.4050 N)
REGION_BBOX = (4.79, 43.37, 4.84, 43.40)


def dual_pol(src: Path, dst: Path) -> Path:
    """The VV tile as a two-band VV / VH file (VH = VV - 7 dB; nodata kept)."""
    with rasterio.open(src) as ds:
        vv = ds.read(1)
        prof = ds.profile
    vh = np.where(vv == ds.nodata, vv, vv - 7.0).astype(np.float32)
    prof.update(count=2)
    with rasterio.open(dst, "w", **prof) as out:
        out.write(np.stack([vv, vh]))
    return dst


def footprint(path: Path) -> dict[str, Any]:
    with rasterio.open(path) as ds:
        return mapping(box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)))


def s1_world(tmp: Path) -> tuple[dict[str, list[Raster]], dict[str, list[dict[str, Any]]]]:
    """Rasters by asset id and the catalogue. Only PORT_ID passes a search of REGION_BBOX in 2017
    (IW, descending, VV+VH, coverage >= 0.5)."""
    port = dual_pol(PORT_TILE, tmp / "port.tif")
    camargue = dual_pol(CAMARGUE_TILE, tmp / "camargue.tif")
    t_port = datetime(2017, 12, 10, 5, 43, 59, tzinfo=timezone.utc)
    fp = footprint(PORT_TILE)
    _, s, e, n = REGION_BBOX
    sliver = mapping(box(e - 0.005, s, e + 0.05, n))  # covers 10 % of the region
    catalogue = [
        s1_asset(COLLECTION, PORT_ID, t_port, fp, platform="A"),
        s1_asset(
            COLLECTION,
            CAMARGUE_ID,
            datetime(2017, 3, 9, 5, 43, 56, tzinfo=timezone.utc),
            footprint(CAMARGUE_TILE),
        ),
        s1_asset(COLLECTION, "S1B_EW_GRDM_1SDH_20171211", t_port, fp, mode="EW", polarisations=("HH", "HV")),
        s1_asset(
            COLLECTION, "S1B_IW_GRDH_1SDV_20171212_ASC", t_port, fp, orbit_pass="ASCENDING", platform="B"
        ),
        s1_asset(COLLECTION, "S1A_IW_GRDH_1SSV_20171213_VVONLY", t_port, fp, polarisations=("VV",)),
        s1_asset(COLLECTION, "S1A_IW_GRDH_1SDV_20171214_SLIVER", t_port, sliver),
        s1_asset(
            COLLECTION, "S1A_IW_GRDH_1SDV_20180101_NEXTYEAR", datetime(2018, 1, 1, 5, tzinfo=timezone.utc), fp
        ),
    ]
    rasters = {
        f"{COLLECTION}/{PORT_ID}": [Raster(port, ("VV", "VH"), t_port)],
        f"{COLLECTION}/{CAMARGUE_ID}": [Raster(camargue, ("VV", "VH"), t_port)],
    }
    for a in catalogue[2:]:
        rasters[a["id"]] = [Raster(port, ("VV", "VH"), t_port)]
    return rasters, {COLLECTION: catalogue}
