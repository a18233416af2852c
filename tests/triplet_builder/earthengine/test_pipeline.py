"""Nothing lost end to end: the whole pipeline with Earth Engine as the embedding source (run_task) and as
the scene source (the Dask executor), every chip in the shards or the rejects with a reason, the request
counters in the statistics, zero requests on a rerun, and EE anchors equal to the COG anchors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.stages import TaskSpec, build_stages, run_task
from tests.conftest import PORT_TILE, ROOT, port_scene
from tests.servers import LoopbackServer, serve
from tests.servers.earthengine import EEHandler, Raster, ee_server_attrs, pixel_requests, request_log
from tests.triplet_builder.earthengine.s1 import PORT_ID, REGION_BBOX, s1_world
from triplet_builder.config import RegionConfig, load_region
from triplet_builder.embeddings.earthengine import BANDS, COLLECTION
from triplet_builder.stages.embed import Embed
from triplet_builder.tiling import plan_windows

SYNTHETIC_AEF = ROOT / "data" / "demo" / "aef_synthetic"
SYNTHETIC_TILE = next((SYNTHETIC_AEF / "2017" / "31N").glob("*.tiff"))


def write_region(tmp: Path, name: str, **fields: Any) -> Path:
    raw: dict[str, Any] = {
        "name": name,
        "area": {"bbox": list(REGION_BBOX)},
        "years": [2017],
        "chip": {"size": 64, "stride": 64, "pixel_size_m": 20},
        "output": {"dir": str(tmp / name)},
        "cache_dir": str(tmp / "cache"),
        "workers": 1,
        **fields,
    }
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def ee_block(srv: LoopbackServer) -> dict[str, Any]:
    return {
        "url": srv.url,
        "project": "test-project",
        "max_concurrent": 4,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }


def read_rows(out: Path, files: list[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for f in files:
        t = pq.read_table(out / f)
        for r in t.to_pylist():
            rows[r["chip_id"]] = r
    return rows


@pytest.fixture
def aef_server() -> Iterator[LoopbackServer]:
    """AlphaEarth served from the demo's synthetic tile (the only AEF raster offline over the Rhone)."""
    rasters = {COLLECTION: [Raster(SYNTHETIC_TILE, BANDS, datetime(2017, 1, 1, tzinfo=timezone.utc), "aef")]}
    with serve(EEHandler, **ee_server_attrs(rasters)) as srv:
        yield srv


def _run(cfg: RegionConfig) -> dict[str, Any]:
    """The REAL run_task: the region's earthengine block and cache root reach the provider through
    pipelines/stages.py's own wiring (nothing patched)."""
    scene = port_scene()
    windows = plan_windows(scene.width, scene.height, size=64, stride=64, native_pixel_m=20.0)
    return run_task(TaskSpec(0, scene, tuple(windows)), cfg)


def test_the_regions_earthengine_block_reaches_the_provider(
    aef_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EE_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    block = {**ee_block(aef_server), "project": "region-project", "max_concurrent": 3, "timeout_s": 17.0}
    cfg = load_region(
        write_region(
            tmp_path,
            "wiring",
            scenes={"type": "local", "paths": [str(PORT_TILE)], "scale": "db"},
            embeddings={"type": "earthengine"},
            earthengine=block,
        )
    )
    (embed,) = [s for s in build_stages(cfg) if isinstance(s, Embed)]
    settings = embed.provider.settings
    assert (settings.url, settings.project, settings.max_concurrent, settings.timeout_s) == (
        aef_server.url,
        "region-project",
        3,
        17.0,
    )
    assert Path(settings.cache_dir).is_relative_to(tmp_path / "cache")


def test_run_task_with_earthengine_embeddings(aef_server: LoopbackServer, tmp_path: Path) -> None:
    common = {"scenes": {"type": "local", "paths": [str(PORT_TILE)], "scale": "db", "backscatter": "sigma0"}}
    cfg = load_region(
        write_region(
            tmp_path,
            "ee_embed",
            embeddings={"type": "earthengine"},
            earthengine=ee_block(aef_server),
            **common,
        )
    )
    res = _run(cfg)
    n = res["windows"]
    assert n == 20
    written = res["written"]
    assert sum(written["rows"].values()) + written["rejects"] == n  # nothing lost
    embed = res["stats"]["embed"]
    earlier = ("tile", "georeference")  # chips straddling splits are rejected before embed (split_guard)
    assert embed["seen"] == n - sum(sum(res["stats"][st]["rejected"].values()) for st in earlier)
    calls = pixel_requests(aef_server)
    assert embed["extra"]["ee_requests"] == len(calls) and 1 <= len(calls) <= 4  # 20 chips, a few grids
    assert all(c.status == 200 for c in calls)
    out = Path(cfg.output.dir)
    ee_rows = read_rows(out, [f for f in written["files"] if f.startswith("data/")])
    rejects = pq.read_table([out / f for f in written["files"] if f.startswith("rejects/")]).to_pylist()
    assert all(r["reason"] for r in rejects)
    assert len(ee_rows) + len(rejects) == n
    assert {r["aef_source"] for r in ee_rows.values()} == {"earthengine:GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"}

    # the same task with the COG provider on the mirror folder of the same data: the same codes, chip by chip
    cog_cfg = load_region(
        write_region(
            tmp_path,
            "cog_embed",
            embeddings={"type": "cog", "root": str(SYNTHETIC_AEF), "synthetic": True},
            **common,
        )
    )
    cog_res = _run(cog_cfg)
    cog_rows = read_rows(
        Path(cog_cfg.output.dir), [f for f in cog_res["written"]["files"] if f.startswith("data/")]
    )
    assert ee_rows.keys() == cog_rows.keys() and ee_rows
    for cid, row in ee_rows.items():
        assert row["aef_codes"] == cog_rows[cid]["aef_codes"], cid
        assert row["aef_valid"] == cog_rows[cid]["aef_valid"], cid

    # a rerun into a fresh folder with the same cache: zero requests of any kind
    before = len(request_log(aef_server))
    again = load_region(
        write_region(
            tmp_path,
            "ee_embed_again",
            embeddings={"type": "earthengine"},
            earthengine=ee_block(aef_server),
            **common,
        )
    )
    res2 = _run(again)
    assert len(request_log(aef_server)) == before
    assert res2["stats"]["embed"]["extra"] == {"ee_cache_hits": len(calls)}


@pytest.fixture
def s1_server(tmp_path: Path) -> Iterator[LoopbackServer]:
    rasters, catalogue = s1_world(tmp_path)
    with serve(EEHandler, **ee_server_attrs(rasters, catalogue)) as srv:
        yield srv


@pytest.mark.slow  # a Dask LocalCluster (about 12 s)
def test_executor_build_with_earthengine_scenes(s1_server: LoopbackServer, tmp_path: Path) -> None:
    from pipelines.executor import build

    region = write_region(
        tmp_path,
        "ee_scenes",
        scenes={"type": "earthengine", "orbit_direction": "descending", "pixel_size_m": 20},
        embeddings={"type": "cog", "root": str(SYNTHETIC_AEF), "synthetic": True},
        earthengine=ee_block(s1_server),
    )
    m = build(load_region(region), progress=False)
    c = m["counts"]
    assert [s["scene_id"] for s in m["scenes"]] == [PORT_ID]
    assert m["scenes"][0]["uris"] == [f"ee://COPERNICUS/S1_GRD/{PORT_ID}"]
    assert c["tasks_failed"] == 0 and m["failures"] == []
    assert c["windows"] > 4 and c["chips_kept"] > 0
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"]  # nothing lost
    tile = m["stages"]["tile"]
    calls = pixel_requests(s1_server)
    assert tile["extra"]["ee_requests"] == len(calls) == c["windows"]  # one request per chip
    out = Path(load_region(region).output.dir)  # the manifest names no folder of this machine
    rows = pq.read_table(out / "data").to_pylist()
    assert {r["scene_id"] for r in rows} == {PORT_ID}
    assert all(r["sensor"] == "Sentinel-1A" and r["polarisations"] == ["VV", "VH"] for r in rows)
    assert all(r["source_uris"] == [f"ee://COPERNICUS/S1_GRD/{PORT_ID}"] for r in rows)
    card = json.dumps(m)
    assert "test-token" not in card and "test-token" not in (out / "README.md").read_text()

    # a rebuild into a fresh folder with the same cache: the search again, but zero pixel requests
    m2 = build(
        load_region(
            write_region(
                tmp_path,
                "ee_scenes_again",
                scenes={"type": "earthengine", "orbit_direction": "descending", "pixel_size_m": 20},
                embeddings={"type": "cog", "root": str(SYNTHETIC_AEF), "synthetic": True},
                earthengine=ee_block(s1_server),
            )
        ),
        progress=False,
    )
    assert m2["counts"]["tasks_failed"] == 0 and m2["failures"] == [], m2["failures"]  # say why, if so
    assert len(pixel_requests(s1_server)) == len(calls)
    assert m2["stages"]["tile"]["extra"] == {"ee_cache_hits": c["windows"]}
    assert m2["counts"]["chips_kept"] == c["chips_kept"]
