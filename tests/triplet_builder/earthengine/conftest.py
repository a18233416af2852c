"""Shared fixtures: the loopback Earth Engine server serving the REAL AlphaEarth window, a COG mirror
folder of the same window, and client settings pointing at the server (token credentials, no network)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from tests.conftest import AEF_WINDOW
from tests.servers import LoopbackServer, serve
from tests.servers.earthengine import EEHandler, Raster, ee_server_attrs
from triplet_builder.earthengine import ClientSettings
from triplet_builder.embeddings.earthengine import BANDS, COLLECTION
from triplet_builder.embeddings.index import build_index

YEAR = 2024
TILE_NAME = "xjejfvrbm1fbu1ecw-0000000000-0000008192.tiff"


@pytest.fixture(autouse=True)
def ee_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials the real client accepts without any network: a ready access token."""
    monkeypatch.setenv("EE_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("EE_SERVICE_ACCOUNT_KEY", raising=False)


def aef_rasters() -> dict[str, list[Raster]]:
    return {COLLECTION: [Raster(AEF_WINDOW, BANDS, datetime(YEAR, 1, 1, tzinfo=timezone.utc), "aef")]}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(EEHandler, **ee_server_attrs(aef_rasters())) as srv:
        yield srv


def settings_for(srv: LoopbackServer, cache: Path, **changes: object) -> ClientSettings:
    base: dict[str, object] = {
        "project": "test-project",
        "url": srv.url,
        "cache_dir": str(cache),
        "max_concurrent": 4,
        "timeout_s": 5.0,
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }
    base.update(changes)
    return ClientSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """The real window in the layout of the public COG mirror (what CogEmbeddingProvider reads)."""
    root = tmp_path / "annual"
    (root / str(YEAR) / "13N").mkdir(parents=True)
    shutil.copy(AEF_WINDOW, root / str(YEAR) / "13N" / TILE_NAME)
    build_index(root)
    return root


def window_pixel_centres() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lon, lat of the centres of every pixel of the real window, and its raw codes (100, 64)."""
    with rasterio.open(AEF_WINDOW) as ds:
        data, t = ds.read(), ds.transform
    rows, cols = np.mgrid[0 : data.shape[1], 0 : data.shape[2]]
    x = t.c + t.a * (cols.ravel() + 0.5)
    y = t.f + t.e * (rows.ravel() + 0.5)
    lon, lat = Transformer.from_crs("EPSG:32613", "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat), data[:, rows.ravel(), cols.ravel()].T
