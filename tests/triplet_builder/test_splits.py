"""Split blocks a footprint touches, the near-duplicate guard of the window grid, and the split report's
independent leakage check (which must see a leak when there is one)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import Transformer

from tests.conftest import ROOT
from triplet_builder.config import ConfigError, load_region
from triplet_builder.grid import cell_bounds, cells_touched, grid_cell
from triplet_builder.tiling import lay_windows, plan_windows
from triplet_builder.writers.splits import split_report

KM = 1.5
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def _cells_by_sampling(poly: shapely.Polygon, n: int = 400) -> set[str]:
    """Reference: the cells holding a dense lattice of points strictly inside the polygon."""
    xmin, ymin, xmax, ymax = poly.bounds
    xs, ys = np.meshgrid(np.linspace(xmin, xmax, n), np.linspace(ymin, ymax, n))
    pts = shapely.points(xs.ravel(), ys.ravel())
    inside = shapely.contains_properly(poly, pts)
    return {grid_cell(p.x, p.y, KM) for p in pts[inside]}


def test_a_chip_inside_one_block_touches_only_that_block() -> None:
    x0, y0, x1, y1 = cell_bounds(grid_cell(4.7, 43.5, KM), KM)
    inner = shapely.box(
        x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0), x0 + 0.6 * (x1 - x0), y0 + 0.7 * (y1 - y0)
    )
    assert cells_touched(inner, KM) == [grid_cell(4.7, 43.5, KM)]


def test_a_footprint_on_block_borders_shares_no_area_with_the_neighbours() -> None:
    name = grid_cell(4.7, 43.5, KM)
    exact = shapely.box(*cell_bounds(name, KM))  # its edges ARE the borders of four neighbours
    assert cells_touched(exact, KM) == [name]
    x0, y0, x1, y1 = cell_bounds(name, KM)
    # a thin sliver across the right border: it shares area with the right neighbour
    sliver = shapely.box(x0, y0, x1 + 1e-7, y1)
    right = grid_cell(x1 + 1e-7, (y0 + y1) / 2, KM)
    assert cells_touched(sliver, KM) == sorted([name, right])


def test_touched_blocks_match_a_dense_point_sample() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        lon, lat = rng.uniform(4.4, 4.9), rng.uniform(43.3, 43.7)
        a = rng.uniform(0, np.pi)
        r = rng.uniform(0.005, 0.03)  # 0.4 to 2.5 km: up to several blocks
        corners = [
            (lon + r * np.cos(a + k * np.pi / 2), lat + 0.7 * r * np.sin(a + k * np.pi / 2)) for k in range(4)
        ]
        poly = shapely.Polygon(corners)
        assert set(cells_touched(poly, KM)) == _cells_by_sampling(poly)


def _shared_fraction(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    (ac, ar, aw, ah), (bc, br, bw, bh) = a, b
    ox = max(0, min(ac + aw, bc + bw) - max(ac, bc))
    oy = max(0, min(ar + ah, br + bh) - max(ar, br))
    return ox * oy / (aw * ah)


@pytest.mark.parametrize(
    ("size", "stride", "max_overlap"), [(64, 32, 0.5), (64, 64, 0.5), (50, 40, 0.3), (64, 48, 0.25)]
)
def test_no_two_windows_share_more_than_max_overlap(size: int, stride: int, max_overlap: float) -> None:
    grid = lay_windows(268, 217, size=size, stride=stride, native_pixel_m=20, max_overlap=max_overlap)
    ws = [w.as_tuple() for w in grid.windows]
    assert max(_shared_fraction(a, b) for a, b in itertools.combinations(ws, 2)) <= max_overlap
    plain = plan_windows(
        268, 217, size=size, stride=stride, native_pixel_m=20
    )  # the flush grid, max_overlap 1
    assert len(grid.windows) + grid.near_duplicates == len(plain)  # every window is accounted for
    assert set(ws) <= {w.as_tuple() for w in plain}


def test_pixel_rounding_does_not_pass_max_overlap() -> None:
    # 50 px chips at 13 m from 10 m pixels: 65 native px; the stride of 25 rounds to 32 native px, which
    # would share 33 / 65 = 0.508: the step is raised to 33
    grid = lay_windows(400, 70, size=50, stride=25, native_pixel_m=10, target_pixel_m=13, max_overlap=0.5)
    ws = [w.as_tuple() for w in grid.windows]
    assert sorted({w[0] for w in ws})[:3] == [0, 33, 66]
    assert max(_shared_fraction(a, b) for a, b in itertools.combinations(ws, 2)) <= 0.5


def test_flush_windows_are_laid_only_within_max_overlap() -> None:
    # 268 px: flush column at 204 shares (192 + 64 - 204) / 64 = 0.81 with the one at 192
    grid = lay_windows(268, 217, size=64, stride=32, native_pixel_m=20, max_overlap=0.5)
    assert sorted({w.col_off for w in grid.windows}) == [0, 32, 64, 96, 128, 160, 192]
    assert sorted({w.row_off for w in grid.windows}) == [0, 32, 64, 96, 128]  # 153 would share 0.61
    assert grid.near_duplicates == 8 * 6 - 7 * 5
    # 100 px, stride 64: the flush window at 36 shares 28 / 64 = 0.44 with the one at 0: laid
    kept = lay_windows(100, 64, size=64, stride=64, native_pixel_m=10, max_overlap=0.5)
    assert [w.col_off for w in kept.windows] == [0, 36] and kept.near_duplicates == 0
    assert lay_windows(100, 64, size=64, stride=64, native_pixel_m=10, max_overlap=0.4).near_duplicates == 1


def test_a_stride_sharing_more_than_max_overlap_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"chip: stride 16 on size 64 .* 0\.75 .* raise stride to >= 32"
    ) as e:
        load_region(DEMO, {"output.dir": str(tmp_path), "chip.stride": 16})
    assert "\n" not in str(e.value)
    cfg = load_region(DEMO, {"output.dir": str(tmp_path), "chip.stride": 16, "chip.max_overlap": 0.75})
    assert cfg.chip.max_overlap == 0.75


def _shards(tmp_path: Path, rows: list[tuple[str, str, shapely.Polygon, dict]]) -> list[str]:
    t = pa.table(
        {
            "split": [r[0] for r in rows],
            "scene_id": [r[1] for r in rows],
            "geometry": [shapely.to_wkb(r[2]) for r in rows],
            "facts": [json.dumps(r[3]) for r in rows],
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(t, tmp_path / "data" / "all.parquet")
    return ["data/all.parquet"]


def test_the_report_sees_a_leak_and_measures_it(tmp_path: Path) -> None:
    """Two chips of different splits overlapping by a known area (as the centre rule allowed)."""
    a = shapely.box(4.70, 43.50, 4.71, 43.51)
    b = shapely.box(4.705, 43.505, 4.715, 43.515)  # a quarter of a shared
    c = shapely.box(4.71, 43.49, 4.72, 43.50)  # meets a at a corner only
    det = {
        "detections": {"detector": {}, "items": [{"bbox": [0, 0, 1, 1]}] * 3},
        "objects": [{"label": "ship", "class": "ship"}],
    }
    a2 = shapely.box(4.7025, 43.50, 4.7125, 43.51)  # same scene and split as a, covering 3/4 of it
    rows = [
        ("train", "s1", a, det),
        ("test", "s2", b, {}),
        ("validation", "s1", c, {}),
        ("train", "s1", a2, {}),
    ]
    files = _shards(tmp_path, rows)
    rep = split_report(tmp_path, files, block_km=KM, min_blocks=5, split_guard_rejects=7)
    utm = Transformer.from_crs("OGC:CRS84", "EPSG:32631", always_xy=True)
    shared = shapely.transform(a2.intersection(b), lambda xy: np.column_stack(utm.transform(*xy.T))).area
    assert (
        rep["cross_split"]["pairs_meeting"] == 4
    )  # a-b, a2-b overlap; a-c meet at a corner, a2-c on an edge
    assert rep["cross_split"]["pairs_sharing_area"] == 2
    assert rep["cross_split"]["max_shared_m2"] == pytest.approx(shared, rel=2e-3)  # UTM vs equal area
    assert rep["max_same_scene_overlap"] == pytest.approx(0.75, abs=1e-4)
    assert rep["per_split"]["train"] == {
        "chips": 2,
        "blocks": len(set(cells_touched(a, KM)) | set(cells_touched(a2, KM))),
        "scenes": 1,
        "objects": 1,
        "detections": 3,
        "targets": 4,
        "objects_by_class": {"ship": 1},
    }
    assert rep["split_guard_rejects"] == 7
    assert [w.split(":")[0] for w in rep["warnings"]] == [
        f"split {s} has {len(set(cells_touched(g, KM)) | set(cells_touched(h, KM)))} block(s) (< split.min_blocks 5)"
        for s, g, h in (("train", a, a2), ("validation", c, c), ("test", b, b))
    ]


def test_chips_over_half_a_block_are_flagged(tmp_path: Path) -> None:
    files = _shards(tmp_path, [("train", "s1", shapely.box(4.70, 43.50, 4.71, 43.51), {})])
    big = split_report(tmp_path, files, block_km=2.5, min_blocks=1, split_guard_rejects=0, chip_km=2.56)
    small = split_report(tmp_path, files, block_km=2.5, min_blocks=1, split_guard_rejects=0, chip_km=1.25)
    flag = "chips of 2.56 km in blocks of 2.5 km: most chips straddle blocks"
    assert any(w.startswith(flag) and w.endswith(">= 5.12") for w in big["warnings"])
    assert not any("straddle" in w for w in small["warnings"])


def test_block_splits_follow_the_documented_sha256_recipe() -> None:
    """A block's split is the first 8 bytes of SHA-256("{salt}|{block_km}|{block}") as a fraction u of 2**64:
    test below `test`, validation below `test + validation`, train above (recomputed here with hashlib)."""
    import hashlib

    from triplet_builder.stages.georef import split_of_block

    blocks = [f"{r}U_{c}R" for r in range(430, 445) for c in range(870, 885)]  # 225 block names
    for salt in ("", "other-salt"):
        got, want = [], []
        for b in blocks:
            digest = hashlib.sha256(f"{salt}|5.0|{b}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
            want.append("test" if u < 0.2 else "validation" if u < 0.5 else "train")
            got.append(split_of_block(b, block_km=5.0, validation=0.3, test=0.2, salt=salt))
        assert got == want
        assert {"train", "validation", "test"} == set(got)
