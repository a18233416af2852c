"""Builds against remote services that fail: every loopback server (STAC search, the COG range server of
the SAR assets, Earth Engine for the AlphaEarth anchors, the OpenAI-compatible LLM) fails a share of its
requests with 429, 5xx, connection resets, stalls past the client's timeout, truncated and garbage bodies,
chosen deterministically per request identity and attempt (tests/servers/faults.py). The build must
finish with every window accounted for, reject (with the reason) the chips of a service that keeps
failing, and summarise its warnings instead of printing one line per retry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

import triplet_builder.sources.stac as stac_mod
from tests.conftest import ROOT, SPATIALIST
from tests.servers import serve
from tests.servers.earthengine import EEHandler, Raster, ee_server_attrs
from tests.servers.faults import KINDS, FaultPlan
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.servers.openai_compat import openai_server
from tests.servers.stac import StacHandler, stac_server_attrs
from triplet_builder.config import load_region
from triplet_builder.embeddings.earthengine import BANDS, COLLECTION

PORT = SPATIALIST / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
AEF_TILE = next((ROOT / "data" / "demo" / "aef_synthetic" / "2017" / "31N").glob("*.tiff"))
KEY_ENV = "SAR_TRIPLETS_TEST_FAULTS_KEY"
TIMEOUT_S = 1.0  # every client's timeout; a stall holds the request longer than that


# ------------------------------------------------------------------------------ the injector itself
def test_the_fault_choice_depends_on_identity_and_attempt_only() -> None:
    ids = [f"GET /a/{i} bytes=0-16383" for i in range(400)]
    a, b = FaultPlan(rate=0.3, seed=7), FaultPlan(rate=0.3, seed=7)
    first = [a.decide(i) for i in ids]
    second = [b.decide(i) for i in reversed(ids)][::-1]  # another arrival order: the same faults
    assert first == second
    share = sum(f is not None for f in first) / len(first)
    assert 0.22 < share < 0.38  # about the rate (400 draws)
    assert {f for f in first if f} == set(KINDS)  # every kind is drawn
    retry = [a.decide(i) for i in ids]  # the second attempt of each is drawn afresh
    assert retry != first and sum(f is not None for f in retry) < len(ids) * 0.4
    assert [d.attempt for d in a.log[:2]] == [0, 0] and a.log[-1].attempt == 1  # recorded per arrival
    assert [FaultPlan(rate=0.3, seed=8).decide(i) for i in ids] != first


def test_always_fails_every_attempt() -> None:
    plan = FaultPlan(rate=0.0, always=lambda ident: "503" if "/bad" in ident else None)
    assert [plan.decide("GET /bad") for _ in range(5)] == ["503"] * 5
    assert plan.decide("GET /good") is None
    assert plan.counts() == {"503": 5, "ok": 1}


# ------------------------------------------------------------------------------------- the world
def _linear_cog(dst: Path) -> None:
    """The real Port-Saint-Louis tile as a linear-power COG (what RTC catalogues serve)."""
    with rasterio.open(PORT) as ds:
        db = ds.read(1).astype(np.float64)
        valid = db != ds.nodata
        lin = np.where(valid, 10.0 ** (db / 10.0), np.nan).astype(np.float32)
        prof = {
            "driver": "COG",
            "width": ds.width,
            "height": ds.height,
            "count": 1,
            "dtype": "float32",
            "crs": ds.crs,
            "transform": ds.transform,
            "nodata": float("nan"),
            "blocksize": 64,
            "compress": "deflate",
        }
    with rasterio.open(dst, "w", **prof) as out:
        out.write(lin, 1)


def _item(url: str) -> dict[str, Any]:
    with rasterio.open(PORT) as ds:
        shp = box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": "S1A_PORT_20171210",
        "collection": "sentinel-1-rtc",
        "geometry": mapping(shp),
        "bbox": list(shp.bounds),
        "properties": {
            "datetime": "2017-12-10T05:43:59Z",
            "platform": "SENTINEL-1A",
            "constellation": "Sentinel-1",
            "sat:orbit_state": "descending",
            "sar:instrument_mode": "IW",
            "sar:product_type": "RTC",
            "sar:polarizations": ["VV"],
        },
        "assets": {"vv": {"href": f"{url}/s1/port_vv.tif", "type": "image/tiff; profile=cloud-optimized"}},
        "links": [],
    }


class World:
    """The four servers with their fault plans, and a region file that uses all of them."""

    def __init__(self, tmp: Path, plans: dict[str, FaultPlan]) -> None:
        self.tmp, self.plans = tmp, plans
        (tmp / "cogs" / "s1").mkdir(parents=True, exist_ok=True)
        _linear_cog(tmp / "cogs" / "s1" / "port_vv.tif")
        self.stack = ExitStack()
        self.cog = self.stack.enter_context(
            serve(RangeHandler, **range_server_attrs(tmp / "cogs", faults=plans["cog"]))
        )
        self.stac = self.stack.enter_context(
            serve(StacHandler, **stac_server_attrs([_item(self.cog.url)]), fault_plan=plans["stac"])
        )
        rasters = {COLLECTION: [Raster(AEF_TILE, BANDS, datetime(2017, 1, 1, tzinfo=timezone.utc), "aef")]}
        self.ee = self.stack.enter_context(
            serve(EEHandler, **ee_server_attrs(rasters), fault_plan=plans["ee"])
        )
        self.llm = self.stack.enter_context(openai_server(fault_plan=plans["llm"]))

    def region(self, name: str) -> Path:
        raw: dict[str, Any] = {
            "name": name,
            "area": {"bbox": [4.79, 43.37, 4.84, 43.40]},
            "years": [2017],
            "scenes": {
                "type": "stac",
                "url": self.stac.url,
                "collection": "sentinel-1-rtc",
                "polarisations": ["VV"],
                "min_coverage": 0.0,
                "backscatter": "gamma0",
            },
            "embeddings": {"type": "earthengine", "grid": 4},
            "earthengine": {
                "url": self.ee.url,
                "project": "test-project",
                "timeout_s": TIMEOUT_S,
                "max_retries": 6,
                "backoff_s": 0.01,
                "max_backoff_s": 0.05,
            },
            "text": {
                "writer": "llm",
                "llm": {
                    "model": "loopback/test-model",
                    "base_url": f"{self.llm.url}/v1",
                    "api_key_env": KEY_ENV,
                    "timeout_s": TIMEOUT_S,
                    "max_retries": 6,
                    "backoff_s": 0.01,
                    "max_backoff_s": 0.05,
                },
            },
            "chip": {"size": 32, "stride": 32, "pixel_size_m": 20},
            "chips_per_task": 8,
            "output": {"dir": str(self.tmp / name)},
            "cache_dir": str(self.tmp / f"cache-{name}"),
            "workers": 1,
        }
        p = self.tmp / f"{name}.yaml"
        p.write_text(yaml.safe_dump(raw))
        return p

    def close(self) -> None:
        self.stack.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and short client timeouts; set before the LocalCluster starts, so workers inherit them."""
    monkeypatch.setenv("EE_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("EE_SERVICE_ACCOUNT_KEY", raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test-faults")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", str(int(TIMEOUT_S)))
    monkeypatch.setattr(stac_mod, "SEARCH_TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(stac_mod, "SEARCH_BACKOFF_S", 0.01)
    monkeypatch.setattr(stac_mod, "SEARCH_MAX_BACKOFF_S", 0.05)


@pytest.fixture
def world(tmp_path: Path, env: None) -> Iterator[World]:
    # seeds are fixed (the faults are a function of them); the STAC one fails the landing page twice
    seeds = {"cog": 0, "stac": 17, "ee": 2, "llm": 3}
    plans = {k: FaultPlan(rate=0.3, seed=seed, stall_s=2 * TIMEOUT_S) for k, seed in seeds.items()}
    w = World(tmp_path, plans)
    try:
        yield w
    finally:
        w.close()


def _accounted(m: dict[str, Any], out: Path) -> None:
    """Every window in the shards or the rejects (in `out`), with a reason; the files agree with the counts."""
    c = m["counts"]
    assert c["tasks_failed"] == 0, "\n".join(f["message"] for f in m["failures"])
    assert c["chips_kept"] + c["chips_rejected"] == c["windows"] > 0
    rows = sum(pq.read_metadata(out / f).num_rows for f in m["files"])
    rejects = (
        pq.read_table([str(out / f) for f in m["rejects_files"]]).to_pylist() if m["rejects_files"] else []
    )
    assert rows == c["chips_kept"] and len(rejects) == c["chips_rejected"]
    assert all(r["reason"] for r in rejects)


@pytest.mark.slow  # a LocalCluster and a few hundred requests, a share of them stalled (about 30 s)
def test_build_completes_with_every_service_failing_30_percent(world: World) -> None:
    from pipelines.executor import build, summary

    cfg = load_region(world.region("faulty"))
    m = build(cfg, progress=False)
    _accounted(m, Path(cfg.output.dir))
    for name, plan in world.plans.items():  # each server did fail some requests, of several kinds
        counts = plan.counts()
        assert sum(v for k, v in counts.items() if k != "ok") > 0, (name, counts)
    assert m["counts"]["chips_kept"] > 0
    text = summary(m)  # retries by kind, a line per stage: not a line per retry
    assert "retried (text)" in text and "retried (embed)" in text and len(text.splitlines()) < 15


@pytest.mark.slow  # a LocalCluster (about 15 s)
def test_a_service_that_keeps_failing_rejects_its_chips_with_the_reason(tmp_path: Path, env: None) -> None:
    """Earth Engine answers every computePixels with 503 (the other services are healthy): each chip that
    needed anchors is rejected `embeddings_unavailable` with the reason, none is dropped, no task fails,
    and the retries are summarised in a few lines instead of one per retry."""
    from pipelines.executor import build, summary

    plans = {k: FaultPlan(rate=0.0) for k in ("cog", "stac", "llm")}
    plans["ee"] = FaultPlan(rate=0.0, always=lambda ident: "503" if "computePixels" in ident else None)
    w = World(tmp_path, plans)
    try:
        cfg = load_region(w.region("ee_down"))
        m = build(cfg, progress=False)
    finally:
        w.close()
    out = Path(cfg.output.dir)
    _accounted(m, out)
    c = m["counts"]
    embed = m["stages"]["embed"]
    assert embed["seen"] > 0 and embed["kept"] == 0
    assert embed["rejected"] == {"embeddings_unavailable": embed["seen"]}
    assert c["chips_kept"] == 0 and c["rejected_by_reason"]["embeddings_unavailable"] == embed["seen"]
    rejects = pq.read_table([str(out / f) for f in m["rejects_files"]]).to_pylist()
    details = [r for r in rejects if r["reason"] == "embeddings_unavailable"]
    assert details and all("after 7 attempts" in (r.get("detail") or "") for r in details)
    calls = plans["ee"].counts()["503"]
    assert calls == 7 * embed["extra"]["ee_failed"]  # 1 + max_retries per request, each one counted
    text = summary(m)
    assert f"ee_retries {embed['extra']['ee_retries']}" in text and len(text.splitlines()) < 15
