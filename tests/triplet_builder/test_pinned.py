"""Known values pinned as literals: a chip id, a written row, a caption of a fixed fact sheet and an
AlphaEarth code at a known lon/lat of the real window. Each literal was computed once, independently
of the code under test where possible (how is said next to it), so that a change of any recipe
fails here instead of passing silently. The same values come out of fresh interpreters with
different PYTHONHASHSEED values, outside Dask (whose workers pin the seed).

A deliberate change of a recipe must update the literal here AND bump the schema / pipeline version,
since it changes every chip id or row of a published dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import rasterio
from pyproj import Transformer

from tests.conftest import AEF_WINDOW, ROOT
from tests.triplet_builder.text.factsheets import fact_sheet
from tests.triplet_builder.writers.records import make_record
from triplet_builder.embeddings.cog import CogEmbeddingProvider
from triplet_builder.embeddings.index import build_index
from triplet_builder.record import Window, chip_id_for
from triplet_builder.text.offline import OfflineWriter
from triplet_builder.writers.parquet import ShardWriter

SCENE_ID = "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db"
WINDOW = Window(160, 0, 32, 32, 32, 32)  # make_record(5): row 0, column 5 of the 32 px grid

# hashlib.sha256(b"S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db|160,0,32,32|32x32")
# .hexdigest()[:16], the recipe documented in README ("hash of scene + window") and record.py
CHIP_ID = "d545287d42c1e8f7"
# sha256 of the canonical JSON of row 0 of the shard written from make_record(5) with its scene URIs relative
# to the repository root (below)
ROW_SHA256 = "3dc9a5e2881466319095a57eb7fa0a810affe7b7388fad720e0b5d743e0c1fc2"
# (re-pinned when rows began to name local scene files and the embeddings root by name only, #10: the
# only columns that changed are source_uris and aef_source; and when the PNG's zlib level went from 6 to
# 4, pipeline 0.2.0, #13: only the image bytes changed)
# sha256 of the chip PNG stored in that row (re-pinned at zlib level 4: the level-6 PNG, 8d7cc97ec416343d...,
# and this one decode to identical pixels, both 1,133 bytes)
PNG_SHA256 = "0b6eaf7be3293ee028ecc71d7e6d8e7bf9ba754e167d0b16b00c3fcccdffe2af"
CAPTION_CHIP_ID = "c0ffee0000000000"
# OfflineWriter().write(fact_sheet("port"), CAPTION_CHIP_ID).caption, read and checked by hand
# against the port fact sheet (5 ships in cells 1, 2, 4, 5; water about 35 %; 2.3 km E of Vlissingen);
# re-pinned when the captions stopped stating a fact twice (issue #9)
CAPTION = (
    "The chip, 3840 m × 3840 m in size (384 × 384 pixels of 10 m), lies 2.3 km east of Vlissingen"
    ", Zeeland, Netherlands; Sentinel-1A IW imaged it on 2023-05-14 (spring) from an ascending or"
    "bit (VV and VH polarisations, gamma0 backscatter). Vessels use the waters near Vlissingen. A"
    " mean of -11.8 dB and a standard deviation of 7.4 dB describe the backscatter. Cells 1, 2 an"
    "d 4 (top-left, top-centre and centre-left) are mostly open water; cells 3 and 5 hold both la"
    "nd and water; cells 6, 7, 8 and 9 (centre-right, bottom-left, bottom-centre and bottom-right"
    ") show land. A land/water boundary crosses the chip, separating the mostly-water cells from "
    "the mostly-land ones. Strong backscatter typical of built structures comes from about 20 % o"
    "f the pixels, chiefly in cells 3, 4, 5, 6, 7 and 8. The water surface takes up about 35 % of"
    " the valid pixels. The labels mark 5 ships, located in cells 1, 2, 4 and 5 (top-left, top-ce"
    "ntre, centre-left and centre). Those with a known length measure 124 m to 190 m."
)
# The real AlphaEarth window (EPSG:32613, 10 m, bottom-up rows). pyproj maps lon -105.95837,
# lat 39.95971 to E 418145.09, N 4423725.13, i.e. raw pixel row 4, column 6 (rasterio's
# DatasetReader.index); the 64 int8 bands there, read with rasterio:
ANCHOR_LONLAT = (-105.95837, 39.95971)
ANCHOR_PIXEL = (4, 6)
ANCHOR_CODE = [
    18, -58, -32, 28, 29, -29, 16, 49, -12, 26, 33, 38, -25, -26, -44, 50,
    -10, -29, 13, -20, 31, -54, 54, -56, 14, -26, -54, 38, 27, 21, 54, 60,
    52, 27, -18, 39, 40, 28, -54, 27, -59, 45, -40, 30, -18, 52, -28, -69,
    -44, -49, 46, -28, -47, 60, 73, 26, -44, -57, -23, -43, -17, 60, 33, -37,
]  # fmt: skip


def _canonical(value: Any) -> Any:
    """JSON-able form of a Parquet value: bytes as hex, floats as their exact repr."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def fingerprints() -> dict[str, str]:
    """The pinned values as this interpreter computes them (also run in subprocesses below)."""
    with tempfile.TemporaryDirectory() as tmp:
        with ShardWriter(Path(tmp), 0, config_hash="0123456789abcdef", pipeline_version="0.1.0") as w:
            rec = make_record(5, "train")
            # the row stores the scene's URIs as given: name them from the repository root, so that the
            # pinned bytes do not depend on where the checkout lies
            bands = tuple(
                dataclasses.replace(b, uri=Path(b.uri).relative_to(ROOT).as_posix()) for b in rec.scene.bands
            )
            rec.scene = dataclasses.replace(rec.scene, bands=bands)
            w.write(rec)
            summary = w.close()
        row = pq.read_table(Path(tmp) / summary["files"][0]).slice(0, 1).to_pylist()[0]
    canonical = json.dumps(_canonical(row), sort_keys=True).encode()
    return {
        "chip_id": chip_id_for(SCENE_ID, WINDOW),
        "row_chip_id": row["chip_id"],
        "row_sha256": hashlib.sha256(canonical).hexdigest(),
        "png_sha256": hashlib.sha256(row["image"]["bytes"]).hexdigest(),
        "caption": OfflineWriter().write(fact_sheet("port"), CAPTION_CHIP_ID).caption,
    }


PINNED = {
    "chip_id": CHIP_ID,
    "row_chip_id": CHIP_ID,
    "row_sha256": ROW_SHA256,
    "png_sha256": PNG_SHA256,
    "caption": CAPTION,
}


def test_chip_id_is_the_documented_recipe() -> None:
    assert chip_id_for(SCENE_ID, WINDOW) == CHIP_ID
    # a different window or scene gives a different id
    assert chip_id_for(SCENE_ID, Window(160, 0, 32, 32, 16, 16)) != CHIP_ID
    assert chip_id_for(SCENE_ID + "_", WINDOW) != CHIP_ID


def test_row_png_and_caption_are_pinned() -> None:
    assert fingerprints() == PINNED


def test_pinned_values_do_not_depend_on_the_hash_seed() -> None:
    """Fresh interpreters (no Dask) with different PYTHONHASHSEED give the same values."""
    script = "import json; from tests.triplet_builder.test_pinned import fingerprints; print(json.dumps(fingerprints()))"
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, check=True
        )
        assert json.loads(proc.stdout) == PINNED, seed


def test_anchor_code_at_a_known_lonlat(tmp_path: Path) -> None:
    # the expectation, recomputed here from the file with pyproj + rasterio (no code of ours)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32613", always_xy=True).transform(*ANCHOR_LONLAT)
    with rasterio.open(AEF_WINDOW) as ds:
        assert ds.index(x, y) == ANCHOR_PIXEL
        assert ds.read()[:, ANCHOR_PIXEL[0], ANCHOR_PIXEL[1]].tolist() == ANCHOR_CODE
    # the provider, reading the window laid out like the public mirror
    tile = tmp_path / "2024" / "13N" / "xjejfvrbm1fbu1ecw-0000000000-0000008192.tiff"
    tile.parent.mkdir(parents=True)
    tile.write_bytes(AEF_WINDOW.read_bytes())
    build_index(tmp_path)
    codes, valid = CogEmbeddingProvider(str(tmp_path)).sample(
        np.array([ANCHOR_LONLAT[0]]), np.array([ANCHOR_LONLAT[1]]), 2024
    )
    assert valid.tolist() == [True]
    assert codes[0].tolist() == ANCHOR_CODE
