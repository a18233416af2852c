"""`validate` contacts no service unless --online; with it, one cheap request per configured service
(Earth Engine, STAC, the COG index, the LLM API), each against its loopback server, with the credentials
the build would use (EE_ACCESS_TOKEN / EE_PROJECT, OPENAI_API_KEY / OPENAI_BASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.online import check_services
from tests.servers import serve
from tests.servers.earthengine import EEHandler, ee_server_attrs, request_log
from tests.servers.http_range import RangeHandler, range_server_attrs
from tests.servers.openai_compat import openai_server
from tests.servers.stac import StacHandler, stac_server_attrs
from triplet_builder.config import load_region

ROOT = Path(__file__).resolve().parents[2]
ROTTERDAM = str(ROOT / "pipelines" / "regions" / "rotterdam_port.yaml")  # Earth Engine scenes


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("EE_ACCESS_TOKEN", "test-token")
    monkeypatch.setenv("EE_PROJECT", "loopback-project")
    monkeypatch.delenv("EE_SERVICE_ACCOUNT_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    (tmp_path / "aef_index.parquet").write_bytes(b"PAR1 index")
    catalogue = {"COPERNICUS/S1_GRD": [{"type": "IMAGE", "name": "x", "id": "COPERNICUS/S1_GRD/x"}]}
    with (
        serve(EEHandler, **ee_server_attrs({}, catalogue)) as ee,
        serve(RangeHandler, **range_server_attrs(tmp_path)) as cog,
        openai_server(api_key="sk-loopback") as llm,
    ):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{llm.url}/v1")  # no text.llm.base_url: the env var
        yield {"ee": ee, "cog": cog, "llm": llm}


def _args(s: dict[str, Any], tmp_path: Path) -> list[str]:
    return [
        "--set", f"output.dir={tmp_path / 'out'}",
        "--set", f"earthengine.url={s['ee'].url}",
        "--set", "embeddings.type=cog",
        "--set", f"embeddings.root={s['cog'].url}",
        "--set", "text.writer=llm",
        "--set", "text.llm={model: loopback-model}",
    ]  # fmt: skip


def test_without_online_nothing_is_contacted(
    services: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", ROTTERDAM, *_args(services, tmp_path)]) == 0
    assert "not listed without --online (nothing was contacted)" in capsys.readouterr().out
    assert request_log(services["ee"]) == [] and services["cog"].log == [] and services["llm"].log == []


def test_online_sends_one_cheap_request_per_service(services: dict[str, Any], tmp_path: Path) -> None:
    # the checks alone (the CLI then plans, which lists the scenes: tested with the Earth Engine source)
    overrides = dict(a.split("=", 1) for a in _args(services, tmp_path)[1::2])
    cfg = load_region(ROTTERDAM, {k: yaml.safe_load(v) for k, v in overrides.items()})
    checks = {c.service: c for c in check_services(cfg)}
    assert set(checks) == {"earthengine", "alphaearth-cog", "llm"} and all(c.ok for c in checks.values())
    assert checks["earthengine"].detail.endswith("project loopback-project, COPERNICUS/S1_GRD listed")
    assert checks["alphaearth-cog"].detail.endswith("aef_index.parquet present (10 bytes)")
    assert checks["llm"].detail.endswith("model loopback-model listed")
    kinds = [r.kind for r in request_log(services["ee"])]
    # `ee` initialises (discovery document, algorithm list), then the one request: listAssets, page size 1
    # one search; the client's own discovery / algorithms requests are made once per process (another test
    # may have initialised it already), so they may or may not appear
    assert kinds.count("listAssets") == 1 and set(kinds) <= {"discovery", "algorithms", "listAssets"}
    assert [(r.method, r.path) for r in services["cog"].log] == [("HEAD", "/aef_index.parquet")]
    assert services["llm"].log == [{"path": "/v1/models", "authorization": "Bearer sk-loopback"}]


def test_online_names_a_refused_key_in_one_line(
    services: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    assert main(["validate", ROTTERDAM, "--online", *_args(services, tmp_path)]) == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error: llm:")]
    assert "AuthenticationError" in line
    assert "error: earthengine" not in err


def test_online_stac_landing_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(StacHandler, **stac_server_attrs([], {})) as stac:
        scenes = f"{{type: stac, url: '{stac.url}', collection: sentinel-1-rtc}}"
        demo = str(ROOT / "pipelines" / "regions" / "demo.yaml")
        main(["validate", demo, "--online", "--set", f"output.dir={tmp_path}", "--set", f"scenes={scenes}"])
        paths = [r.path for r in stac.log]
    assert "  stac: ok, " in capsys.readouterr().out
    assert paths[0] == "/"
