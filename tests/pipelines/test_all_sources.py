"""One region with every annotation source at once (issue #9): the demo's real Sentinel-1 chips with land
cover from WorldCover tiles behind the loopback range server, OpenStreetMap from the loopback Overpass API
and a label file; each chip's sheet holds every section, the text uses them, and the consistency filter
keeps every chip (what the writer says, the checker finds true)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipelines.plan import plan
from pipelines.stages import TaskSpec, run_task
from tests.servers import serve
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.servers.overpass import OsmFixture, OverpassHandler, overpass_attrs
from tests.triplet_builder.sources.worldcover_fixtures import write_grid, write_tile
from triplet_builder.config import load_region
from triplet_builder.geo import scene_geo
from triplet_builder.text.consistency import check_caption

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def _centre(geo, w, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    lon, lat = geo.pixel_to_lonlat(
        np.array([w.row_off + w.height * fy]), np.array([w.col_off + w.width * fx])
    )
    return float(lon[0]), float(lat[0])


def test_a_region_with_every_source(tmp_path: Path) -> None:
    base = load_region(DEMO, {"output.dir": str(tmp_path / "probe"), "stages": []})
    task = plan(base).tasks[1]
    windows = task.windows[:6]
    geo = scene_geo(task.scene)
    # labels: two ships in the first chip, a storage tank in the second (timeless: match none)
    feats = []
    for (fx, fy), cls in (((0.3, 0.3), "ship"), ((0.7, 0.6), "ship")):
        lon, lat = _centre(geo, windows[0], fx, fy)
        feats.append({"type": "Feature", "properties": {"class": cls, "length_m": 60},
                      "geometry": {"type": "Point", "coordinates": [lon, lat]}})  # fmt: skip
    lon, lat = _centre(geo, windows[1])
    feats.append({"type": "Feature", "properties": {"class": "storage-tank"},
                  "geometry": {"type": "Point", "coordinates": [lon, lat]}})  # fmt: skip
    labels = tmp_path / "objects.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    # WorldCover: the part of tile N42E003 over the demo's 2017 scenes
    bucket = tmp_path / "bucket"
    write_tile(bucket, 2020, "N42E003", 4.48, 43.62, 4560, 3120, seed=5)
    write_grid(bucket, ["N42E003"])
    # OpenStreetMap: a primary road north-south through the first chip, farmland over everything
    lon0, lat0 = _centre(geo, windows[0], 0.25)
    osm = OsmFixture()
    osm.way(1, [(lon0, lat0 - 0.05), (lon0, lat0 + 0.05)], {"highway": "primary", "name": "D 36"})
    osm.way(
        2, [(4.40, 43.30), (4.95, 43.30), (4.95, 43.70), (4.40, 43.70)], {"landuse": "farmland"}, closed=True
    )
    with (
        serve(RangeHandler, **range_server_attrs(bucket)) as wc,
        serve(OverpassHandler, **overpass_attrs(osm)) as op,
    ):
        stages = [
            {"name": "land_cover", "config": {"url": wc.url}},
            {"name": "osm", "config": {"endpoint": op.url + "/api", "min_interval_s": 0.0,
                                       "features": ["road", "farmland", "building", "storage tank"]}},
        ]  # fmt: skip
        cfg = load_region(
            DEMO,
            {
                "output.dir": str(tmp_path / "out"),
                "cache_dir": str(tmp_path / "cache"),
                "stages": stages,
                "facts.labels": {"path": str(labels), "match": "none"},
            },
        )
        result = run_task(TaskSpec(0, task.scene, windows), cfg)
    stats = result["stats"]
    assert {"labels", "land_cover", "osm"} <= set(stats) and stats["land_cover"]["kept"] == stats["facts"][
        "kept"
    ]
    assert stats["filter"]["rejected"] == {}  # the checker found every caption and answer true
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert len(rows) == stats["filter"]["kept"] > 0
    tasks = set()
    for row in rows:
        facts = json.loads(row["facts"])
        assert {"land_cover", "osm"} <= set(facts["ext"])
        assert facts["labels"]["classes_labelled"] == ["ship", "storage tank"]
        assert facts["ext"]["land_cover"]["product"] == "esa-worldcover"
        assert facts["ext"]["osm"]["features"]["farmland"]["count"] == 1
        assert check_caption(facts, row["caption_fields"]) == []
        tasks |= {q["task"] for q in row["qa"]}
        counts = facts["labels"]["counts"]
        ships = [o for o in facts["objects"] if o["class"] == "ship"]
        assert counts["ship"] == len(ships)
    assert "classification" in tasks and "counting" in tasks
    text = " ".join(r["caption"] for r in rows)
    assert "WorldCover" in text and "OpenStreetMap" in text
    by_id = {r["chip_id"]: json.loads(r["facts"]) for r in rows}
    first = [f for f in by_id.values() if f["labels"]["counts"]["ship"] == 2]
    assert first and "road" in first[0]["ext"]["osm"]["features"]
