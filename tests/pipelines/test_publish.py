"""`publish`: refuses a folder that fails verify or holds paths of this machine; copies exactly the listed
files to an fsspec URL (file://, memory://); to a hub dataset repo through the REAL huggingface_hub client
against the loopback hub (tests/servers/hub.py), LFS upload included, and resumes after a failed commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.publish import PublishError, hub_token, publish, publishable, published_files
from tests.servers import serve
from tests.servers.hub import HubHandler, hub_attrs

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_loopback_token"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, built as a user would (relative paths; output.dir is relative to the region file)."""
    out = tmp_path_factory.mktemp("publish") / "out"
    r = subprocess.run(
        [sys.executable, "-m", "pipelines", "build", "pipelines/regions/demo.yaml", "--set",
         f"output.dir={os.path.relpath(out, ROOT / 'pipelines' / 'regions')}", "--set", "workers=1", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def folder(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out


def _listed(out: Path) -> set[str]:
    return set(published_files(out, json.loads((out / "manifest.json").read_text())))


def test_the_demo_build_is_publishable_and_lists_only_its_files(folder: Path) -> None:
    assert publishable(folder) == []
    listed = _listed(folder)
    assert {"manifest.json", "README.md", "metadata.parquet"} <= listed
    assert any(f.startswith("data/") for f in listed) and any(f.startswith("rejects/") for f in listed)
    assert not any(f.startswith("_tasks") for f in listed) and (folder / "_tasks").is_dir()


def _plant_row_uri(out: Path, uri: str) -> str:
    shard = json.loads((out / "manifest.json").read_text())["files"][0]
    t = pq.read_table(out / shard)
    uris = t.column("source_uris").to_pylist()
    uris[0] = [uri]
    i = t.schema.get_field_index("source_uris")
    t = t.set_column(i, t.schema.field(i), pa.array(uris, type=t.schema.field(i).type))
    pq.write_table(t, out / shard)
    return shard


def test_publishable_names_every_local_path_and_publish_refuses(folder: Path, tmp_path: Path) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m["embeddings_source"] = f"cog:{Path.home()}"  # the builder's home, no trailing slash
    m["config"]["output"]["dir"] = "/srv/builds/demo"  # any absolute path
    (folder / "manifest.json").write_text(json.dumps(m))
    card = folder / "README.md"
    card.write_text(card.read_text() + "\nbuilt from file:///data/scenes\n")
    shard = _plant_row_uri(folder, "/mnt/raid/S1A_scene.tif")
    problems = publishable(folder)
    assert any(p.startswith("manifest.json: embeddings_source holds a local path") for p in problems)
    assert "manifest.json: config.output.dir holds a local path ('/srv/builds/demo')" in problems
    assert any(p.startswith("README.md: line") and "file:///data/scenes" in p for p in problems)
    assert f"{shard}: column source_uris[] holds a local path ('/mnt/raid/S1A_scene.tif')" in problems
    assert len(problems) == 4
    dest = tmp_path / "dest"
    with pytest.raises(PublishError, match="holds paths of this machine"):
        publish(folder, str(dest))
    assert not dest.exists()  # nothing left the folder


def test_public_urls_product_ids_and_gdal_urls_are_not_local_paths(folder: Path) -> None:
    _plant_row_uri(folder, "/vsicurl/https://sentinel-1.example.org/S1A_IW_GRDH_1SDV_20170309T054356.tif")
    m = json.loads((folder / "manifest.json").read_text())
    m["embeddings_source"] = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual"
    (folder / "manifest.json").write_text(json.dumps(m))
    assert publishable(folder) == []


def test_a_folder_failing_verify_is_refused(folder: Path, tmp_path: Path) -> None:
    shard = json.loads((folder / "manifest.json").read_text())["files"][0]
    (folder / shard).unlink()
    with pytest.raises(PublishError, match=f"does not pass verify .*{shard}"):
        publish(folder, str(tmp_path / "dest"))


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_fsspec_destinations_get_exactly_the_listed_files(folder: Path, tmp_path: Path, scheme: str) -> None:
    url = f"file://{tmp_path / 'dest'}" if scheme == "file" else "memory://published/demo"
    res = publish(folder, url)
    fs, root = fsspec.core.url_to_fs(url)
    got = {p.removeprefix(root.rstrip("/") + "/").lstrip("/") for p in fs.find(root)}
    got = {g.removeprefix(root.lstrip("/").rstrip("/") + "/") for g in got}
    assert got == _listed(folder)
    for rel in got:
        assert fs.cat_file(f"{root}/{rel}") == (folder / rel).read_bytes()
    assert res["files"] == len(got) and res["bytes"] == sum((folder / f).stat().st_size for f in got)
    if scheme == "memory":
        fs.rm(root, recursive=True)


def test_cli_publish_to_a_folder_and_a_one_line_refusal(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "release" / "demo"
    assert main(["publish", str(folder), str(dest)]) == 0
    assert f"to {dest}" in capsys.readouterr().out and (dest / "manifest.json").is_file()
    (folder / "manifest.json").write_text(
        (folder / "manifest.json").read_text().replace('"README.md"', '"x"')
    )
    m = json.loads((folder / "manifest.json").read_text())
    m["region_file"] = "/home/someone/regions/demo.yaml"
    (folder / "manifest.json").write_text(json.dumps(m))
    assert main(["publish", str(folder), str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "region_file" in err and err.startswith("error: ")


# ---- the hub ---------------------------------------------------------------------------------------


@pytest.fixture
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's LFS path: the loopback hub speaks LFS, not the Xet storage protocol."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def test_hub_upload_creates_the_repo_and_commits_every_file_with_lfs(folder: Path, no_xet: None) -> None:
    with serve(HubHandler, **hub_attrs(TOKEN)) as srv:
        res = publish(folder, "me/sar-demo", private=True, token=TOKEN, endpoint=srv.url)
        repo = srv.repos["me/sar-demo"]
        log = list(srv.log)
    assert repo.private
    assert set(repo.files) == _listed(folder)
    for rel, data in repo.files.items():
        assert data == (folder / rel).read_bytes()
    parquet = {f for f in _listed(folder) if f.endswith(".parquet")}
    assert repo.lfs_paths == parquet  # the shards went by LFS, the card and manifest inline
    assert len([r for r in log if r.kind == "put"]) == len(parquet)
    assert len(repo.commits) == 1 and res["commit"] == repo.commits[0]["oid"]
    config_hash = json.loads((folder / "manifest.json").read_text())["config_hash"]
    assert repo.commits[0]["summary"] == f"Publish demo (config {config_hash})"
    assert all(r.authorization == f"Bearer {TOKEN}" for r in log if r.kind != "put")
    assert [r.kind for r in log if r.kind == "unknown"] == []


def test_hub_upload_resumes_after_a_failed_commit_without_resending(folder: Path, no_xet: None) -> None:
    with serve(HubHandler, **hub_attrs(TOKEN, fail={"commit": 1})) as srv:
        with pytest.raises(PublishError, match=r"500.*rerun the same publish to resume"):
            publish(folder, "me/sar-demo", token=TOKEN, endpoint=srv.url)
        assert srv.repos["me/sar-demo"].files == {}  # nothing committed
        puts_first = len([r for r in srv.log if r.kind == "put"])
        n = len(srv.log)
        publish(folder, "me/sar-demo", token=TOKEN, endpoint=srv.url)  # the repo exists now: 409 is fine
        second = srv.log[n:]
        repo = srv.repos["me/sar-demo"]
    assert puts_first == len([f for f in _listed(folder) if f.endswith(".parquet")])
    assert [r.kind for r in second if r.kind == "put"] == []  # the LFS objects were kept: not sent again
    assert [r.status for r in second if r.kind == "create"] == [409]
    assert set(repo.files) == _listed(folder) and len(repo.commits) == 1


def test_hub_refuses_a_wrong_token_in_one_line(folder: Path, no_xet: None) -> None:
    with serve(HubHandler, **hub_attrs(TOKEN)) as srv:
        with pytest.raises(PublishError, match="401"):
            publish(folder, "hf://datasets/me/sar-demo", token="hf_wrong", endpoint=srv.url)
        assert srv.log[0].authorization == "Bearer hf_wrong" and srv.repos == {}


def test_hub_token_from_env_then_the_stored_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    stored = tmp_path / "hf_home" / "token"
    stored.parent.mkdir()
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(stored))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="set HF_TOKEN or run `hf auth login`"):
        hub_token()
    stored.write_text("hf_stored_login\n")
    assert hub_token() == "hf_stored_login"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hub_token() == "hf_from_env"
