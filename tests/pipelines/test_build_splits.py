"""The demo build's splits, end to end: no two chips of different splits share a pixel (footprints and,
within a scene, native windows), every window is accounted for, and the card's and summary's figures on
splits, leakage, rejects and attribution are recomputed here from the shards and the rejects table."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import Transformer

from tests.conftest import ROOT
from tests.pipelines.test_build import cli, region_file
from triplet_builder.grid import cell_bounds, grid_cell

pytestmark = pytest.mark.slow

UTM = Transformer.from_crs("OGC:CRS84", "EPSG:32631", always_xy=True)  # the demo's zone


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("demo_splits")
    r = cli("build", str(region_file(tmp)), "--no-progress")
    assert r.returncode == 0, r.stderr
    out = tmp / "out"
    return out, r, json.loads((out / "manifest.json").read_text())


def _rows(out: Path) -> list[dict[str, Any]]:
    cols = ["chip_id", "split", "scene_id", "window", "geometry", "facts"]
    return pq.read_table(out / "data", columns=cols).to_pylist()


def _rejects(out: Path) -> list[dict[str, Any]]:
    files = sorted((out / "rejects").glob("*.parquet"))
    return pq.read_table(files, columns=["chip_id", "reason"]).to_pylist() if files else []


def _utm(wkb: bytes) -> shapely.Geometry:
    return shapely.transform(shapely.from_wkb(wkb), lambda xy: np.column_stack(UTM.transform(*xy.T)))


def _cross_split_pairs(rows: list[dict[str, Any]]) -> tuple[int, float]:
    """(pairs of chips of different splits whose footprints meet, the largest area two of them share)."""
    foot = [_utm(r["geometry"]) for r in rows]
    meeting, largest = 0, 0.0
    for (a, fa), (b, fb) in itertools.combinations(zip(rows, foot, strict=True), 2):
        if a["split"] != b["split"] and fa.intersects(fb):
            meeting += 1
            largest = max(largest, fa.intersection(fb).area)
    return meeting, largest


def _blocks(wkb: bytes, km: float) -> set[str]:
    """Blocks sharing area with a footprint smaller than a block: each holds one of its vertices."""
    poly = shapely.from_wkb(wkb)
    cand = {grid_cell(x, y, km) for x, y in poly.exterior.coords}
    return {c for c in cand if shapely.box(*cell_bounds(c, km)).intersection(poly).area > 0}


def test_no_two_chips_of_different_splits_share_a_pixel(demo: tuple[Path, Any, dict[str, Any]]) -> None:
    out, _, _ = demo
    rows = _rows(out)
    assert len({r["split"] for r in rows}) == 3
    for a, b in itertools.combinations(rows, 2):
        if a["split"] == b["split"]:
            continue
        if a["scene_id"] == b["scene_id"]:  # the same native pixels?
            wa, wb = a["window"], b["window"]
            ox = min(wa["col_off"] + wa["width"], wb["col_off"] + wb["width"]) - max(
                wa["col_off"], wb["col_off"]
            )
            oy = min(wa["row_off"] + wa["height"], wb["row_off"] + wb["height"]) - max(
                wa["row_off"], wb["row_off"]
            )
            assert ox <= 0 or oy <= 0, (a["chip_id"], b["chip_id"])
    _, largest = _cross_split_pairs(rows)
    assert largest < 1e-6  # m2 (the two scenes overlap: this is the check across them)


def _window_share(wa: dict[str, int], wb: dict[str, int]) -> float:
    ox = min(wa["col_off"] + wa["width"], wb["col_off"] + wb["width"]) - max(wa["col_off"], wb["col_off"])
    oy = min(wa["row_off"] + wa["height"], wb["row_off"] + wb["height"]) - max(wa["row_off"], wb["row_off"])
    return max(0, ox) * max(0, oy) / (wa["width"] * wa["height"])


def _plain_grid(extent: int, size: int = 64, step: int = 32) -> tuple[int, int]:
    """(offsets of a grid flush with the far edge, of them the flush one sharing > half a chip)."""
    offs = list(range(0, extent - size + 1, step))
    flush = offs[-1] + size < extent
    return len(offs) + flush, int(flush and (offs[-1] + 2 * size - extent) / size > 0.5)


def test_every_window_is_accounted_for(demo: tuple[Path, Any, dict[str, Any]]) -> None:
    out, _, m = demo
    c = m["counts"]
    grid, near = 0, 0
    for s in m["scenes"]:
        with rasterio.open(ROOT / "data/demo/spatialist" / s["uris"][0]) as ds:  # rows name files by name
            (nx, dx), (ny, dy) = _plain_grid(ds.width), _plain_grid(ds.height)
        grid += nx * ny
        near += nx * ny - (nx - dx) * (ny - dy)
    assert c["windows_near_duplicate"] == near > 0
    assert c["windows"] + c["windows_near_duplicate"] + c["windows_outside_region"] == grid
    rows, rejects = _rows(out), _rejects(out)
    assert c["chips_kept"] == len(rows) and c["chips_rejected"] == len(rejects)
    assert len({r["chip_id"] for r in rows} | {r["chip_id"] for r in rejects}) == c["windows"]
    guard = sum(r["reason"] == "split_guard" for r in rejects)
    assert c["rejected_by_reason"]["split_guard"] == m["splits"]["split_guard_rejects"] == guard > 0
    assert {s: v["chips"] for s, v in m["splits"]["per_split"].items()} == c["rows_per_split"]


def test_card_and_summary_state_the_builds_figures(demo: tuple[Path, Any, dict[str, Any]]) -> None:
    out, r, m = demo
    card = (out / "README.md").read_text()
    rows, rejects = _rows(out), _rejects(out)
    km = m["config"]["split"]["block_km"]
    meeting, largest = _cross_split_pairs(rows)
    guard = sum(x["reason"] == "split_guard" for x in rejects)
    assert (
        f"{guard} chip(s) rejected by the split guard; {meeting} pair(s) of chips of different splits have "
        f"footprints that meet, 0 of them share area, the largest shared area is 0 m2; "
        "0 block(s) hold chips of two splits." in " ".join(card.split())
    )
    assert largest < 1e-6
    for split in ("train", "validation", "test"):
        mine = [x for x in rows if x["split"] == split]
        blocks = set().union(*(_blocks(x["geometry"], km) for x in mine))
        facts = [json.loads(x["facts"]) for x in mine]
        objects = sum(len(f.get("objects") or []) for f in facts)
        detections = sum(len((f.get("detections") or {}).get("items") or []) for f in facts)
        scenes = len({x["scene_id"] for x in mine})
        assert f"| {split} | {len(mine)} | {len(blocks)} | {scenes} | {objects} | {detections} |" in card
        warned = f"split {split} has {len(blocks)} block(s) (< split.min_blocks 5)"
        assert (warned in card and warned in r.stdout) == (len(blocks) < 5)
    chip = "chips of 1.28 km in blocks of 2.5 km: most chips straddle blocks"  # 64 px x 20 m, 2.5 km blocks
    assert km == 2.5 and chip in r.stdout and chip in " ".join(card.split())
    # near duplicates: the largest share of a chip another kept chip of its scene (and split) covers, in
    # native pixels, against the card's footprint figure
    frac = max(
        _window_share(a["window"], b["window"])
        for a, b in itertools.combinations(rows, 2)
        if a["scene_id"] == b["scene_id"] and a["split"] == b["split"]
    )
    assert frac <= 0.5
    near = m["counts"]["windows_near_duplicate"]
    assert (
        f"covered by another kept chip of its scene is {frac:g} (chip.max_overlap 0.5); {near} flush last-row / "
        "last-column window(s)" in " ".join(card.split())
    )
    # rejects: the files the card names exist, and the per-reason counts are the table's
    named = re.findall(r"`(rejects/[^`]+)`", card)
    assert named and all((out / f).is_file() for f in named)
    assert sorted(named) == sorted(str(p.relative_to(out)) for p in (out / "rejects").glob("*.parquet"))
    assert f"({', '.join(f'{k}: {v}' for k, v in sorted(_count(rejects).items()))})" in card


def _count(rejects: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in rejects:
        out[x["reason"]] = out.get(x["reason"], 0) + 1
    return out


def test_attributions_come_from_the_inputs(demo: tuple[Path, Any, dict[str, Any]]) -> None:
    out, _, m = demo
    names = sorted(Path(s["uris"][0]).name for s in m["scenes"])
    (line,) = [a for a in m["attributions"] if a.startswith("SAR scene files")]
    assert line.startswith(f"SAR scene files {', '.join(names)}: licence file LICENSE.txt beside them: MIT")
    assert "Contains modified Copernicus Sentinel data 2017" in m["attributions"]
    assert str(ROOT) not in json.dumps(m["attributions"])  # file names, not the machine's folders
    card = (out / "README.md").read_text()
    assert f"- {line}" in card and card.count("Contains modified Copernicus Sentinel data") == 1
