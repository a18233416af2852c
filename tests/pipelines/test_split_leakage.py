"""No leak by construction, on dense generated scenes: two overlapping scenes (the second shifted by a
fraction of a chip), chips at 50 % overlap and split blocks smaller than a few chips, so that many chips
straddle blocks. The tile and georeference stages run on every window; the test then checks every pair
of kept chips of different splits itself, on footprints and, within a scene, on native pixel windows."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from pipelines.executor import plan
from pipelines.stages import build_stages
from tests.conftest import ROOT
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.grid import cell_bounds, grid_cell
from triplet_builder.record import ChipRecord, chip_id_for
from triplet_builder.stages.base import Stats, run_stages
from triplet_builder.stages.georef import split_for

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
BLOCK_KM = 0.5
UTM = Transformer.from_crs("OGC:CRS84", "EPSG:32631", always_xy=True)


def _write_scene(path: Path, x0: float, y0: float, seed: int) -> None:
    data = np.random.default_rng(seed).normal(-12, 3, (1, 160, 160)).astype("float32")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=160,
        height=160,
        count=1,
        dtype="float32",
        crs="EPSG:32631",
        transform=from_origin(x0, y0, 10, 10),
    ) as ds:
        ds.write(data)


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> tuple[RegionConfig, list[ChipRecord]]:
    tmp = tmp_path_factory.mktemp("dense")
    _write_scene(tmp / "S1A__IW___D_20170610T054359_VV_dense_db.tif", 640000, 4810000, 0)
    _write_scene(tmp / "S1A__IW___D_20170622T054359_VV_shifted_db.tif", 640075, 4809955, 1)
    cfg = load_region(
        DEMO,
        {
            "output.dir": str(tmp / "out"),
            "scenes.paths": [str(tmp / "*.tif")],
            "chip.size": 16,
            "chip.stride": 8,
            "chip.pixel_size_m": None,
            "split.block_km": BLOCK_KM,
            "split.validation": 0.3,
            "split.test": 0.3,
        },
    )
    p = plan(cfg)
    recs = [ChipRecord(chip_id_for(t.scene.scene_id, w), t.scene, w) for t in p.tasks for w in t.windows]
    stages = build_stages(cfg)[:2]  # tile, georeference
    out = list(run_stages(stages, recs, Stats()))
    for s in stages:
        s.close()
    return cfg, out


def _utm(geom: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(geom, lambda xy: np.column_stack(UTM.transform(*xy.T)))


def test_the_scenes_are_dense_and_many_chips_straddle_blocks(
    dense: tuple[RegionConfig, list[ChipRecord]],
) -> None:
    cfg, recs = dense
    kept = [r for r in recs if not r.rejected]
    guarded = [r for r in recs if r.reject_reason == "split_guard"]
    assert len(recs) == 2 * 19 * 19 and all(r.reject_reason in (None, "split_guard") for r in recs)
    assert len(guarded) > 50 and len({r.split for r in kept}) == 3
    for r in guarded:  # the reason's detail names blocks of at least two splits; never read (tile's guard)
        assert (
            r.reject_stage == "tile"
            and r.db is None
            and len({w for w in ("train", "validation", "test") if w in r.reject_detail}) >= 2
        )
    # the old rule (split of the block holding the centre) would have put the guarded chips in the splits
    s = cfg.split
    centre_rule = {
        split_for(
            r.georef.centre_lon,
            r.georef.centre_lat,
            block_km=BLOCK_KM,
            validation=s.validation,
            test=s.test,
            salt=s.salt,
        )
        for r in guarded
        if r.georef is not None
    }
    assert len(centre_rule) >= 2


def test_no_two_chips_of_different_splits_share_a_pixel(dense: tuple[RegionConfig, list[ChipRecord]]) -> None:
    _, recs = dense
    kept = [r for r in recs if not r.rejected]
    foot = [_utm(shapely.from_wkb(r.georef.footprint_wkb)) for r in kept if r.georef is not None]
    gap = np.inf
    for (a, fa), (b, fb) in itertools.combinations(zip(kept, foot, strict=True), 2):
        if a.split == b.split:
            continue
        if a.scene.scene_id == b.scene.scene_id:  # pixel level, in the scene's own grid
            wa, wb = a.window, b.window
            ox = min(wa.col_off + wa.width, wb.col_off + wb.width) - max(wa.col_off, wb.col_off)
            oy = min(wa.row_off + wa.height, wb.row_off + wb.height) - max(wa.row_off, wb.row_off)
            assert ox <= 0 or oy <= 0, (a.chip_id, b.chip_id)
        assert fa.intersection(fb).area < 1e-6, (a.chip_id, b.chip_id)  # m2: a shared border line at most
        gap = min(gap, fa.distance(fb))
    # not vacuous: chips of different splits come within one chip (160 m) of each other at block borders
    assert gap < 160


def test_every_kept_chip_lies_in_blocks_of_its_own_split(
    dense: tuple[RegionConfig, list[ChipRecord]],
) -> None:
    cfg, recs = dense
    s = cfg.split
    for r in recs:
        if r.rejected or r.georef is None:
            continue
        poly = shapely.from_wkb(r.georef.footprint_wkb)
        for x, y in poly.exterior.coords:  # each vertex's block, and the centre's
            assert split_for(
                x, y, block_km=BLOCK_KM, validation=s.validation, test=s.test, salt=s.salt
            ) == r.split or (
                shapely.box(*cell_bounds(grid_cell(x, y, BLOCK_KM), BLOCK_KM)).intersection(poly).area == 0
            )


def test_each_window_is_placed_once_and_as_the_georeference_stage_alone_places_it(
    dense: tuple[RegionConfig, list[ChipRecord]],
) -> None:
    """The build's tile stage places each chip (georeference's `locate`) before reading it; the
    georeference stage then does not place it again, and every chip ends as the stage alone places it."""
    cfg, guarded_out = dense
    p = plan(cfg)
    windows = [(t.scene, w) for t in p.tasks for w in t.windows]
    tile, georef = build_stages(cfg)[:2]
    calls: list[str] = []
    locate = georef.locate  # type: ignore[attr-defined]

    def counted(record: ChipRecord) -> tuple[str, str] | None:
        calls.append(record.chip_id)
        return locate(record)

    georef.locate = counted  # type: ignore[attr-defined]
    tile.guard = counted  # type: ignore[attr-defined]
    recs = [ChipRecord(chip_id_for(s.scene_id, w), s, w) for s, w in windows]
    list(run_stages([tile, georef], recs, Stats()))
    tile.close()
    assert len(calls) == len(windows) == len(set(calls))
    # the georeference stage alone (no guard, no read) on fresh records: the same placement and verdicts
    alone = build_stages(cfg)[1]
    solo = [alone.process(ChipRecord(chip_id_for(s.scene_id, w), s, w)) for s, w in windows]
    for a, b in zip(recs, solo, strict=True):
        assert (a.split, a.reject_reason, a.reject_detail, a.georef) == (
            b.split,
            b.reject_reason,
            b.reject_detail,
            b.georef,
        )
    assert [r.split for r in guarded_out] == [r.split for r in recs]
