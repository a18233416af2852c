"""Targets detected where they are: the tile stage reads each chip with its context, the facts stage
detects on it, and overlapping chips of a REAL demo tile report the same targets as the whole scene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from triplet_builder.config import FactsConfig, SceneSourceConfig
from triplet_builder.facts.cfar import CfarParams, detect
from triplet_builder.facts.surface import surface_facts
from triplet_builder.record import ChipRecord, chip_id_for
from triplet_builder.sources.local import find_scenes
from triplet_builder.stages.base import Stats, run_stages
from triplet_builder.stages.facts import Facts
from triplet_builder.stages.georef import Georeference
from triplet_builder.stages.tile import ReadChips
from triplet_builder.tiling import plan_windows

DEMO = Path(__file__).parents[3] / "data" / "demo" / "spatialist"
PORT = DEMO / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"


def _chips(margin: int, size: int = 64, stride: int = 32) -> list[ChipRecord]:
    (scene,), _ = find_scenes(SceneSourceConfig(paths=[str(PORT)], scale="db", backscatter="sigma0"))
    windows = plan_windows(scene.width, scene.height, size=size, stride=stride, native_pixel_m=20.0)
    recs = [ChipRecord(chip_id_for(scene.scene_id, w), scene, w) for w in windows]
    stages = [ReadChips(max_nodata_fraction=1.0, margin=margin), Georeference(), Facts(FactsConfig())]
    return list(run_stages(stages, recs, Stats()))


def test_the_context_is_the_scene_around_the_chip_with_nodata_beyond_it() -> None:
    m = FactsConfig().cfar.margin
    with rasterio.open(PORT) as ds:
        raw = ds.read(1).astype(np.float32)
    scene = np.where(raw == -99.0, np.nan, raw)
    (scene_ref,), _ = find_scenes(SceneSourceConfig(paths=[str(PORT)], scale="db", backscatter="sigma0"))
    for w in plan_windows(268, 217, size=64, stride=64, native_pixel_m=20.0)[:3]:
        rec = ChipRecord("x", scene_ref, w)
        (out,) = list(ReadChips(max_nodata_fraction=1.0, margin=m).run([rec], Stats()))
        assert out.context_db is not None and out.db is not None and out.margin == m
        ref = np.full((64 + 2 * m, 64 + 2 * m), np.nan, dtype=np.float32)
        y0, x0 = w.row_off - m, w.col_off - m
        ys, xs = slice(max(y0, 0), min(y0 + 64 + 2 * m, 217)), slice(max(x0, 0), min(x0 + 64 + 2 * m, 268))
        ref[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = scene[ys, xs]
        np.testing.assert_array_equal(out.context_db[0], ref)
        np.testing.assert_array_equal(
            out.db[0], scene[w.row_off : w.row_off + 64, w.col_off : w.col_off + 64]
        )


def test_overlapping_real_chips_agree_with_the_whole_scene_and_surface_uses_the_chip_only() -> None:
    cfg = FactsConfig()
    params = CfarParams(
        pfa=cfg.cfar.pfa, guard=cfg.cfar.guard, train=cfg.cfar.train, min_db=cfg.cfar.min_db,
        min_area_px=cfg.cfar.min_area_px, max_area_px=cfg.cfar.max_area_px, max_extent_px=cfg.cfar.max_extent_px,
    )  # fmt: skip
    with rasterio.open(PORT) as ds:
        raw = ds.read(1).astype(np.float32)
    valid = raw != -99.0
    scene = np.where(valid, raw, np.nan)
    whole = {tuple(d["peak_px"]): d for d in detect(scene, valid, None, 20.0, params)}
    assert len(whole) >= 5  # the port has ships and quays
    chips = _chips(cfg.cfar.margin)
    assert len(chips) >= 30
    seen: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in chips:
        w, facts = r.window, r.facts
        assert facts is not None and r.context_db is None  # the context is dropped once used
        got = {}
        for d in facts["detections"]["items"]:
            peak = (w.col_off + d["peak_px"][0], w.row_off + d["peak_px"][1])
            got[peak] = d
            seen.setdefault(peak, []).append(d)
        inside = {
            p for p in whole if w.col_off <= p[0] < w.col_off + 64 and w.row_off <= p[1] < w.row_off + 64
        }
        assert set(got) == inside, w
        for p in inside:
            keys = ("area_px", "peak_db")
            assert [got[p][k] for k in keys] == [whole[p][k] for k in keys]
            assert (got[p]["length_m"] is None) == (whole[p]["length_m"] is None)
        # every other fact is of the chip's own pixels
        chip = scene[w.row_off : w.row_off + 64, w.col_off : w.col_off + 64][None]
        ok = valid[w.row_off : w.row_off + 64, w.col_off : w.col_off + 64]
        provenance = ("water_threshold_cross_db", "water_threshold_source", "bright_threshold_source")
        assert facts["surface"]["water_threshold_source"] == "table:sigma0/co-pol"  # -18 / 0 dB, the defaults
        assert {k: v for k, v in facts["surface"].items() if k not in provenance} == surface_facts(
            chip, ok, ("VV",)
        )
    assert set(seen) == set(whole)
    for ds in seen.values():  # every chip holding a target says the same of it
        assert all(
            {k: d[k] for k in ("area_px", "length_m", "peak_db")}
            == {k: ds[0][k] for k in ("area_px", "length_m", "peak_db")}
            for d in ds
        )
    assert max(len(v) for v in seen.values()) >= 2  # targets in the shared interior of several chips


def test_a_resampled_chip_is_the_same_with_or_without_its_context() -> None:
    """At a coarser target pixel (2 native px per chip px) the context is read on the same output grid:
    the chip at the centre of the context equals the chip read alone, also at the scene's corner (to
    float32 rounding: GDAL sums the averaged pixels in another order for another window)."""
    (scene,), _ = find_scenes(SceneSourceConfig(paths=[str(PORT)], scale="db", backscatter="sigma0"))
    for w in plan_windows(
        scene.width, scene.height, size=32, stride=32, native_pixel_m=20.0, target_pixel_m=40.0
    ):
        (alone,) = ReadChips(max_nodata_fraction=1.0).run([ChipRecord("a", scene, w)], Stats())
        (ctx,) = ReadChips(max_nodata_fraction=1.0, margin=10).run([ChipRecord("b", scene, w)], Stats())
        assert alone.db is not None and ctx.db is not None and ctx.context_db is not None
        assert ctx.context_db.shape == (1, 52, 52)
        np.testing.assert_allclose(ctx.db, alone.db, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(ctx.valid, alone.valid)
