"""The computePixels runner with the REAL `ee` client against the loopback server: good path, bounded
retries on 429 / 500 / deadline, splitting (never retrying) oversized requests, the on-disk cache."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from googleapiclient.errors import HttpError
from httplib2 import Response

from tests.servers import LoopbackServer, serve
from tests.servers.earthengine import EEHandler, ee_server_attrs, pixel_requests, request_log
from tests.triplet_builder.earthengine.conftest import YEAR, aef_rasters, settings_for
from triplet_builder.earthengine import (
    ClientSettings,
    ComputePixelsRunner,
    EarthEngineError,
    EarthEngineSetupError,
    Grid,
    ImageSpec,
    PixelCache,
    PixelRequest,
    backoff_delay,
    classify,
    load_credentials,
    resolve_project,
)
from triplet_builder.embeddings.earthengine import BANDS, COLLECTION

# the real window: EPSG:32613, x 418080..418180, y 4423680..4423780 (10 x 10 px of 10 m)
WINDOW_GRID = Grid("EPSG:32613", (10.0, 0.0, 418080.0, 0.0, -10.0, 4423780.0), 10, 10)


def aef_request(grid: Grid = WINDOW_GRID, bands: tuple[str, ...] = BANDS) -> PixelRequest:
    spec = ImageSpec(
        bands=bands, sentinel=-9999.0, collection=COLLECTION, start=f"{YEAR}-01-01", end=f"{YEAR + 1}-01-01"
    )
    return PixelRequest(spec, grid)


def test_good_path_returns_the_grid_and_counts(server: LoopbackServer, tmp_path: Path) -> None:
    runner = ComputePixelsRunner(settings_for(server, tmp_path))
    arr = runner.fetch(aef_request())
    assert arr.shape == (10, 10) and arr.dtype.names == BANDS
    v = np.stack([arr[b] for b in BANDS], axis=-1)
    assert np.all(np.abs(np.linalg.norm(v, axis=-1) - 1) < 0.02)  # unit vectors, none masked
    c = runner.drain()
    assert c["requests"] == 1 and c["bytes"] > 10 * 10 * 64 * 4 and "retries" not in c
    calls = pixel_requests(server)
    assert len(calls) == 1
    body = calls[0].body
    assert body is not None and body["fileFormat"] == "NPY" and body["grid"]["crsCode"] == "EPSG:32613"
    assert "Image.unmask" in json.dumps(body["expression"])  # masked pixels never come back as zeros
    assert runner.drain() == {}  # drained


@pytest.mark.parametrize("fault", ["429", "500"])
def test_transient_errors_are_retried(tmp_path: Path, fault: str) -> None:
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), faults=[fault, fault])) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path))
        arr = runner.fetch(aef_request())
        statuses = [r.status for r in pixel_requests(srv)]
    assert arr.shape == (10, 10)
    assert statuses == [int(fault), int(fault), 200]
    c = runner.drain()
    assert c["retries"] == 2 and c["requests"] == 3 and c["errors_transient"] == 2


def test_retries_are_bounded(tmp_path: Path) -> None:
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), faults=["429"] * 10)) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path, max_retries=2))
        with pytest.raises(EarthEngineError, match=r"after 3 attempts.*max_concurrent"):
            runner.fetch(aef_request())
        assert len(pixel_requests(srv)) == 3  # 1 + max_retries, never more
    assert not list(Path(tmp_path).rglob("*.cache"))  # nothing cached from a failure


def test_slow_answer_hits_the_deadline_and_is_retried(tmp_path: Path) -> None:
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), faults=["slow"], slow_s=1.5)) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path, timeout_s=0.5))
        arr = runner.fetch(aef_request())
        faults = [r.fault for r in pixel_requests(srv)]  # recorded on arrival, slow one included
    assert arr.shape == (10, 10)
    # the slow answer first; then good ones (more than one only if a loaded machine answers past 0.5 s)
    assert faults[0] == "slow" and len(faults) >= 2 and set(faults[1:]) == {None}, faults
    c = runner.drain()
    assert c["retries"] == len(faults) - 1 and c["requests"] == len(faults)


def test_server_too_large_is_split_not_retried(tmp_path: Path) -> None:
    # the server's limit (3 KB) is far below what the client plans for: its 400 makes the client split
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), max_bytes=3000)) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path))
        arr = runner.fetch(aef_request())
        log = pixel_requests(srv)
    sizes = [
        (r.body["grid"]["dimensions"]["width"], r.body["grid"]["dimensions"]["height"]) for r in log if r.body
    ]
    assert sizes[0] == (10, 10) and log[0].status == 400
    assert sizes.count((10, 10)) == 1  # the oversized request is never sent again as is
    ok = [s for s, r in zip(sizes, log, strict=True) if r.status == 200]
    assert all(w * h * 64 * 4 <= 3000 for w, h in ok)
    assert sum(w * h for w, h in ok) == 100  # the leaves tile the grid exactly
    c = runner.drain()
    assert c["splits"] >= 1 and "retries" not in c
    with serve(EEHandler, **ee_server_attrs(aef_rasters())) as srv2:  # stitched == fetched whole
        whole = ComputePixelsRunner(settings_for(srv2, tmp_path / "whole")).fetch(aef_request())
    for b in BANDS:
        np.testing.assert_array_equal(arr[b], whole[b])


def test_one_shot_too_large_fault_is_split(server: LoopbackServer, tmp_path: Path) -> None:
    server.faults.append("too_large")  # type: ignore[attr-defined]
    runner = ComputePixelsRunner(settings_for(server, tmp_path))
    arr = runner.fetch(aef_request())
    log = pixel_requests(server)
    assert arr.shape == (10, 10)
    assert [r.status for r in log] == [400, 200, 200]
    assert [r.body["grid"]["dimensions"]["width"] for r in log if r.body] == [10, 5, 5]


def test_planned_split_before_any_call(server: LoopbackServer, tmp_path: Path) -> None:
    runner = ComputePixelsRunner(settings_for(server, tmp_path), max_request_bytes=10 * 5 * 64 * 4)
    arr = runner.fetch(aef_request())
    log = pixel_requests(server)
    assert [r.status for r in log] == [200, 200]  # no 400: the size was predictable
    assert arr.shape == (10, 10)
    assert runner.drain()["planned_splits"] == 1


def test_second_run_makes_zero_requests(server: LoopbackServer, tmp_path: Path) -> None:
    reqs = [aef_request(), aef_request(WINDOW_GRID.sub(0, 0, 5, 5))]
    first = ComputePixelsRunner(settings_for(server, tmp_path)).fetch_many(reqs)
    n = len(request_log(server))
    runner = ComputePixelsRunner(settings_for(server, tmp_path))
    second = runner.fetch_many(reqs)
    assert len(request_log(server)) == n  # not even discovery: ee is not touched
    assert runner.drain() == {"cache_hits": 2}
    for a, b in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()


def test_corrupt_cache_entry_is_refetched(server: LoopbackServer, tmp_path: Path) -> None:
    req = aef_request()
    ComputePixelsRunner(settings_for(server, tmp_path)).fetch(req)
    path = PixelCache(tmp_path).path(req.cache_key())
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF  # one flipped byte in the pixels
    path.write_bytes(bytes(blob))
    runner = ComputePixelsRunner(settings_for(server, tmp_path))
    runner.fetch(req)
    c = runner.drain()
    assert c["requests"] == 1 and "cache_hits" not in c
    path.write_bytes(path.read_bytes()[:100])  # truncated
    runner.fetch(req)
    assert runner.drain()["requests"] == 1
    assert PixelCache(tmp_path).get(req.cache_key()) is not None  # healed


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), gather=3)) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path, max_concurrent=3))
        reqs = [aef_request(WINDOW_GRID.sub(r, 0, 1, 10)) for r in range(10)]
        rows = runner.fetch_many(reqs)
        # the server held the first 3 until all 3 were in flight: concurrent; and never more than 3
        assert srv.gather.reached and srv.max_inflight == 3  # type: ignore[attr-defined]
    whole = np.concatenate(rows)
    assert whole.shape == (10, 10)


def test_cache_key_depends_on_grid_and_image() -> None:
    a = aef_request()
    assert a.cache_key() == aef_request().cache_key()
    assert a.cache_key() != aef_request(WINDOW_GRID.sub(0, 0, 5, 5)).cache_key()
    assert a.cache_key() != aef_request(bands=BANDS[:3]).cache_key()


def test_runner_pickles_without_runtime_state(server: LoopbackServer, tmp_path: Path) -> None:
    runner = ComputePixelsRunner(settings_for(server, tmp_path))
    runner.fetch(aef_request())
    clone = pickle.loads(pickle.dumps(runner))
    assert clone.settings == runner.settings and clone._pool is None
    assert clone.fetch(aef_request()).shape == (10, 10)


def test_missing_project_is_one_actionable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EE_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(EarthEngineSetupError, match=r"set EE_PROJECT or earthengine\.project") as e:
        resolve_project(ClientSettings())
    assert "\n" not in str(e.value)
    monkeypatch.setenv("EE_PROJECT", "from-env")
    assert resolve_project(ClientSettings()) == "from-env"
    assert resolve_project(ClientSettings(project="from-config")) == "from-config"


def test_missing_credentials_is_one_actionable_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EE_ACCESS_TOKEN")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud ADC file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # refuse fast instead of probing a metadata server
    with pytest.raises(
        EarthEngineSetupError, match=r"set EE_SERVICE_ACCOUNT_KEY or earthengine\.service_account_key"
    ):
        load_credentials(ClientSettings())
    with pytest.raises(EarthEngineSetupError, match="not found"):
        load_credentials(ClientSettings(service_account_key=str(tmp_path / "nope.json")))


def test_service_account_key_path(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = tmp_path / "key.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "key-project",
                "client_email": "sa@key-project.iam.gserviceaccount.com",
                "private_key": pem.decode(),
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    creds = load_credentials(ClientSettings(service_account_key=str(key)))
    assert creds.service_account_email == "sa@key-project.iam.gserviceaccount.com"
    assert resolve_project(ClientSettings(service_account_key=str(key))) == "key-project"


def _http_error(status: int, message: str) -> HttpError:
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    return HttpError(Response({"status": status}), body)


def test_classify() -> None:
    import ee

    def translated(status: int, message: str) -> BaseException:
        """What ee.data raises: an EEException with the message, the HttpError as its context."""
        e = ee.EEException(message)
        e.__context__ = _http_error(status, message)
        return e

    assert classify(translated(429, "Too many concurrent aggregations.")) == "transient"
    assert classify(translated(503, "The service is currently unavailable.")) == "transient"
    assert (
        classify(
            translated(
                400, "Total request size (60000000 bytes) must be less than or equal to 50331648 bytes."
            )
        )
        == "too_large"
    )
    assert classify(translated(400, "Image.select: Pattern 'X' did not match any bands.")) == "fatal"
    assert classify(TimeoutError("read timed out")) == "transient"
    assert classify(ee.EEException("User memory limit exceeded.")) == "too_large"
    assert classify(ee.EEException("Computation timed out.")) == "transient"
    assert classify(ee.EEException("Asset not found")) == "fatal"
    assert classify(translated(400, "Computation timed out.")) == "transient"
    assert classify(translated(403, "Permission denied: quota project not set.")) == "fatal"


def test_backoff_is_bounded_and_jittered() -> None:
    import random

    rng = random.Random(0)
    delays = [backoff_delay(k, 1.0, 8.0, rng) for k in range(10)]
    assert all(0.5 * min(8.0, 2.0**k) <= d <= min(8.0, 2.0**k) for k, d in enumerate(delays))
    assert max(delays) <= 8.0 and len(set(delays)) == len(delays)


def test_server_answers_geotiff_on_the_requested_grid(server: LoopbackServer, tmp_path: Path) -> None:
    import ee
    from rasterio.io import MemoryFile

    from triplet_builder.earthengine import initialize

    settings = settings_for(server, tmp_path)
    initialize(settings)
    req = aef_request(bands=BANDS[:2])
    data = ee.data.computePixels(
        {"expression": req.image.to_ee(), "fileFormat": "GEO_TIFF", "grid": req.grid.to_ee()}
    )
    npy = ComputePixelsRunner(settings).fetch(req)
    with MemoryFile(data) as mem, mem.open() as ds:
        assert ds.crs.to_string() == "EPSG:32613" and ds.transform.c == 418080.0 and ds.transform.e == -10.0
        assert ds.descriptions == BANDS[:2]
        np.testing.assert_array_equal(ds.read(1), npy["A00"])


def test_the_client_speaks_v1_with_its_token(server: LoopbackServer, tmp_path: Path) -> None:
    """The real client fetches the v1 discovery document and calls the v1 paths it describes, with the
    token as a Bearer credential (the server refuses anything else)."""
    ComputePixelsRunner(settings_for(server, tmp_path)).fetch(aef_request())
    log = request_log(server)
    assert [r.kind for r in log][:1] == ["discovery"] and all(r.status == 200 for r in log), log
    calls = [r for r in log if r.kind != "discovery"]
    assert "computePixels" in {r.kind for r in calls} and {r.kind for r in calls} <= {
        "algorithms",
        "computePixels",
    }
    assert all(r.path.startswith("/v1/projects/test-project/") for r in calls), [r.path for r in calls]


def test_a_wrong_token_is_refused_and_named(tmp_path: Path) -> None:
    with serve(EEHandler, **ee_server_attrs(aef_rasters(), token="another-token")) as srv:
        runner = ComputePixelsRunner(settings_for(srv, tmp_path))
        with pytest.raises((EarthEngineError, EarthEngineSetupError)) as info:
            runner.fetch(aef_request())
        log = request_log(srv)
    message = str(info.value)
    assert "refused the credentials (HTTP 401)" in message and "EE_ACCESS_TOKEN" in message, message
    assert "test-token" not in message and "\n" not in message
    assert log and not pixel_requests(srv)  # nothing computed without credentials
    assert {r.kind for r in log} == {"discovery", "unauthenticated"}
