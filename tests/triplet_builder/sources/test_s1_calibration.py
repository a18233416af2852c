"""SAFE GRD products are calibrated to sigma0: the real annotation and calibration XML of the pyroSAR test
product plus generated measurement GeoTIFFs of the product's full size (sparse: only a few blocks hold
digital numbers), read through GDAL's SENTINEL1 driver."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window as RioWindow

from tests.conftest import SAFE_ZIP
from triplet_builder.config import SceneSourceConfig
from triplet_builder.record import Backscatter, ChipRecord, GeorefKind, Scale, Window
from triplet_builder.sources.local import find_scenes
from triplet_builder.stages.base import Stats
from triplet_builder.stages.tile import ReadChips

WIDTH, HEIGHT = 25560, 16712  # numberOfSamples x numberOfLines of the real annotation
BLOCK = RioWindow(0, 1280, 256, 128)  # where the generated digital numbers are (LUT line 1337 inside)


@pytest.fixture(scope="module")
def safe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("safe")
    with zipfile.ZipFile(SAFE_ZIP) as z:
        z.extractall(root)
    product = next(root.glob("*.SAFE"))
    dns = {}
    for i, (pol, n) in enumerate((("vv", "001"), ("vh", "002"))):
        path = (
            product
            / "measurement"
            / f"s1a-iw-grd-{pol}-20150203t043109-20150203t043134-004454-00574f-{n}.tiff"
        )
        path.parent.mkdir(exist_ok=True)
        dn = np.random.default_rng(i).integers(20, 900, (BLOCK.height, BLOCK.width), dtype=np.uint16)
        profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=1, dtype="uint16", tiled=True)
        with rasterio.open(path, "w", blockxsize=256, blockysize=256, sparse_ok=True, **profile) as ds:
            ds.write(dn, 1, window=BLOCK)
        dns[pol.upper()] = dn
    with zipfile.ZipFile(root / f"{product.stem}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(product.rglob("*")):
            z.write(f, f.relative_to(root).as_posix())
    return product, dns


def _lut(product: Path, pol: str) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """The sigmaNought vectors straight from the XML: lines, pixels per vector, values per vector."""
    (xml,) = (product / "annotation" / "calibration").glob(f"calibration-*-{pol.lower()}-*.xml")
    vecs = ET.parse(xml).getroot().iter("calibrationVector")
    out: tuple[list[int], list[list[int]], list[list[float]]] = ([], [], [])
    for v in vecs:
        out[0].append(int(v.findtext("line") or 0))
        out[1].append([int(x) for x in (v.findtext("pixel") or "").split()])
        out[2].append([float(x) for x in (v.findtext("sigmaNought") or "").split()])
    return out


def test_safe_grd_scene_is_calibrated_sigma0(safe: tuple[Path, dict[str, np.ndarray]]) -> None:
    product, _ = safe
    (scene,), failures = find_scenes(SceneSourceConfig(paths=[str(product)]))
    assert failures == []
    assert scene.georef is GeorefKind.GCPS and scene.polarisations == ("VV", "VH")
    assert (scene.width, scene.height) == (WIDTH, HEIGHT)
    assert scene.scale is Scale.LINEAR_POWER and scene.scale_source == "safe-calibration"
    assert scene.backscatter is Backscatter.SIGMA0 and scene.backscatter_source == "safe-calibration"
    assert all(b.uri.startswith("SENTINEL1_CALIB:UNCALIB:") for b in scene.bands)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "zip"])
def test_calibrated_values_equal_dn2_over_lut2(
    safe: tuple[Path, dict[str, np.ndarray]], packed: bool
) -> None:
    """At LUT nodes sigma0 = DN^2 / A^2 with A read from the XML; between two nodes of a vector A is their
    linear interpolation (pixel 60 lies halfway between nodes 40 and 80). The same from the .zip."""
    product, dns = safe
    path = product.with_suffix(".zip") if packed else product
    (scene,), failures = find_scenes(SceneSourceConfig(paths=[str(path)]))
    assert failures == [] and ("/vsizip/" in scene.bands[0].uri) is packed
    win = Window(0, 1330, 96, 16, 96, 16)
    (out,) = list(ReadChips().run([ChipRecord("c", scene, win)], Stats()))
    assert out.db is not None and out.db.shape == (2, 16, 96)
    for b, pol in enumerate(("VV", "VH")):
        lines, pixels, values = _lut(product, pol)
        k = lines.index(1337)
        assert pixels[k][:3] == [0, 40, 80]
        a_at = {0: values[k][0], 40: values[k][1], 80: values[k][2], 60: (values[k][1] + values[k][2]) / 2}
        for col, a in a_at.items():
            dn = float(dns[pol][1337 - BLOCK.row_off, col])
            expect_db = 10 * np.log10(dn * dn / (a * a))
            got = float(out.db[b, 1337 - win.row_off, col])
            assert got == pytest.approx(expect_db, abs=1e-4), (pol, col)


def test_zero_digital_numbers_are_invalid_not_minus_infinity(
    safe: tuple[Path, dict[str, np.ndarray]],
) -> None:
    """Outside the written blocks the file holds 0 (no data in a GRD): those pixels are masked."""
    product, _ = safe
    (scene,), _ = find_scenes(SceneSourceConfig(paths=[str(product)]))
    rec = ChipRecord("z", scene, Window(5000, 5000, 32, 32, 32, 32))
    (out,) = list(ReadChips().run([rec], Stats()))
    assert out.valid is not None and not out.valid.any() and out.rejected
