"""End to end with a label file: the demo region through the real CLI; every label is counted once in
the manifest (in a chip, matched but outside every chip, or unmatched) and unmatched labels reach no
row's facts or text."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
from pyproj import Transformer

from tests.conftest import PORT_TILE
from tests.pipelines.test_build import cli, region_file

pytestmark = pytest.mark.slow

PORT_ID = "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db"  # in the build
CAMARGUE_SAFE = "S1A_IW_GRDH_1SDV_20170309T054356_20170309T054421_015623_019B1B_6D00.SAFE"  # in the build
LATER_SAFE = "S1A_IW_GRDH_1SDV_20171222T054358_20171222T054423_019723_0218C5_1A2B"  # not in the build
SKIPPED_2015 = "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db"  # outside the dates: skipped


def test_manifest_counts_labels_and_unmatched_ones_reach_no_row(tmp_path: Path) -> None:
    with rasterio.open(PORT_TILE) as ds:
        tr = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        pts = [tr.transform(*ds.xy(r, c)) for r, c in [(100, 150), (120, 60)]]
    rows = [
        ("own-1", PORT_ID, pts[0], True),
        ("own-2", f"{PORT_ID}.tif", pts[1], True),
        ("camargue", CAMARGUE_SAFE, pts[0], False),  # a scene of the build, but not at this place
        ("later-1", LATER_SAFE, pts[0], False),  # the port 12 days later: no scene of the build
        ("later-2", f"{LATER_SAFE}.zip", pts[1], False),
        ("old", SKIPPED_2015, pts[1], False),
        ("lost", PORT_ID, (float("nan"), float("nan")), True),  # no position: skipped, counted
    ]
    pd.DataFrame(
        {
            "detect_id": [r[0] for r in rows],
            "scene_id": [r[1] for r in rows],
            "detect_lon": [r[2][0] for r in rows],
            "detect_lat": [r[2][1] for r in rows],
            "is_vessel": [r[3] for r in rows],
            "is_fishing": [False] * len(rows),
            "vessel_length_m": [80.0] * len(rows),
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    # one split: no chip is rejected by the split guard, so every label in a window reaches a row
    region = region_file(
        tmp_path, **{"facts.labels": {"path": "labels.csv"}, "split.validation": 0, "split.test": 0}
    )
    r = cli("build", str(region), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "labels:   2 in chips, 1 matched outside the chips, 3 unmatched (match: scene_id)" in r.stdout
    out = tmp_path / "out"
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["labels"] == {
        "file": "labels.csv",
        "match": "scene_id",
        "total": 7,
        "no_position": 1,
        "matched": 3,
        "unmatched": 3,
        "in_chips": 2,
        "matched_outside_chips": 1,
        "classes_labelled": ["ship"],  # found in the file; xView3's non-vessels are `other`, never counted
        "classes_from": "file",
    }
    extra = m["stages"]["labels"]["extra"]  # the per-task counts, summed over the tasks
    tasks = [json.loads(p.read_text()) for p in sorted((out / "_tasks").glob("task-*.json"))]
    per_task = [t["stats"]["labels"].get("extra", {}) for t in tasks]
    for key in ("labels_matched", "labels_unmatched", "labels_in_chips", "labels_outside_chips"):
        assert extra[key] == sum(e[key] for e in per_task), key
    port_tasks = [e for t, e in zip(tasks, per_task, strict=True) if t["scene_id"] == PORT_ID]
    assert sum(e["labels_in_chips"] for e in port_tasks) >= 2
    ids = set()
    unclipped = 0
    table = pq.read_table(out / "data", columns=["scene_id", "facts", "caption", "qa"]).to_pylist()
    for row in table:
        for o in json.loads(row["facts"])["objects"]:
            assert row["scene_id"] == PORT_ID and o["label"] == "vessel", o
            x1, y1, x2, y2 = o["bbox"]
            if 0 < x1 and x2 < 64 and 0 < y1 and y2 < 64:  # not clipped at the chip edge
                assert (x2 - x1, y2 - y1) == (4, 4)  # 80 m at 20 m
                unclipped += 1
            ids.add(o["attributes"]["id"])
        assert "non-vessel" not in row["caption"] and all("non-vessel" not in q["answer"] for q in row["qa"])
    assert ids == {"own-1", "own-2"}
    assert unclipped >= 1  # the box size was checked at least once


def test_per_class_counts_match_an_independent_count(tmp_path: Path) -> None:
    """A DOTA / HRSID-like file of several classes on the port scene: each row's `labels.counts` and its
    objects' classes equal a count made here with geopandas alone (the label file filtered by the row's
    scene and its footprint polygon, classes normalised), and the card's per-class table sums them."""
    import random
    from collections import Counter

    import geopandas as gpd
    import shapely

    from schemas.vocabulary import normalise_object_class

    rnd = random.Random(9)
    with rasterio.open(PORT_TILE) as ds:
        tr = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        cells = [(rnd.randrange(ds.height), rnd.randrange(ds.width)) for _ in range(40)]
        pts = [tr.transform(*ds.xy(r, c)) for r, c in cells]
    names = ["ship", "plane", "storage-tank", "harbor"]  # harbor: no vocabulary class (other)
    frame = pd.DataFrame(
        {
            "scene_id": [PORT_ID if i % 7 else LATER_SAFE for i in range(len(pts))],  # some of another date
            "lon": [p[0] for p in pts],
            "lat": [p[1] for p in pts],
            "category": [names[i % len(names)] for i in range(len(pts))],
            "length_m": [60.0] * len(pts),
        }
    )
    frame.to_csv(tmp_path / "objects.csv", index=False)
    region = region_file(
        tmp_path,
        **{"facts.labels": {"path": "objects.csv"}, "scenes.paths": [str(PORT_TILE)]},
    )
    r = cli("build", str(region), "--no-progress")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    m = json.loads((out / "manifest.json").read_text())
    order = m["stage_order"]
    assert order[order.index("facts") + 1] == "labels"
    # labelled objects of every class (an unknown one named by its own label) keep their text true
    assert "inconsistent_text" not in m["counts"]["rejected_by_reason"], m["counts"]["rejected_by_reason"]
    assert m["counts"]["labels"]["classes_labelled"] == ["aircraft", "ship", "storage tank"]
    # the independent count: geopandas, the file, the row's scene and footprint
    gdf = gpd.read_file(tmp_path / "objects.csv")  # CSV read by pyogrio: all text
    gdf = gpd.GeoDataFrame(
        gdf, geometry=gpd.points_from_xy(gdf["lon"].astype(float), gdf["lat"].astype(float)), crs="EPSG:4326"
    )
    gdf["vocab"] = [normalise_object_class(c) for c in gdf["category"]]
    rows = pq.read_table(out / "data", columns=["scene_id", "split", "geometry", "facts"]).to_pylist()
    assert rows
    per_split: dict[str, Counter[str]] = {}
    seen = 0
    for row in rows:
        sheet = json.loads(row["facts"])
        footprint = shapely.from_wkb(row["geometry"])
        mine = gdf[(gdf["scene_id"] == row["scene_id"]) & gdf.intersects(footprint)]
        expected = Counter(mine["vocab"])
        assert Counter(o["class"] for o in sheet["objects"]) == expected, row["scene_id"]
        assert sheet["labels"]["classes_labelled"] == ["aircraft", "ship", "storage tank"]
        assert sheet["labels"]["counts"] == {c: expected[c] for c in ("aircraft", "ship", "storage tank")}
        per_split.setdefault(row["split"], Counter()).update(expected)
        seen += len(mine)
    assert seen >= 5  # the check saw objects
    card = (out / "README.md").read_text()
    for klass in ("aircraft", "other", "ship", "storage tank"):
        n = [per_split[s][klass] for s in per_split]
        line = next(ln for ln in card.splitlines() if ln.startswith(f"| {klass} | "))
        assert line.endswith(f"| {sum(n)} |"), line
