"""Earth Engine credentials and project as users keep them: besides a key file or a token, the login
stored by `earthengine authenticate` and the project of `earthengine set_project`, read from a fake HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials

from triplet_builder.earthengine import (
    ClientSettings,
    EarthEngineSetupError,
    load_credentials,
    resolve_project,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EE_ACCESS_TOKEN", "EE_SERVICE_ACCOUNT_KEY", "EE_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    # no Application Default Credentials to fall back on
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-adc.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    return tmp_path


def _store(home: Path, **content: object) -> None:
    path = home / ".config" / "earthengine" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(content))


def test_the_stored_login_and_project_are_used(home: Path) -> None:
    _store(
        home, refresh_token="1//stored-refresh", project="my-ee-project", client_id="cid", client_secret="cs"
    )
    creds = load_credentials(ClientSettings())
    assert isinstance(creds, Credentials)
    assert creds.refresh_token == "1//stored-refresh" and creds.client_id == "cid"
    assert creds.quota_project_id == "my-ee-project"
    assert resolve_project(ClientSettings()) == "my-ee-project"
    assert resolve_project(ClientSettings(project="from-config")) == "from-config"  # the config wins


def test_a_token_in_the_environment_comes_before_the_stored_login(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(home, refresh_token="1//stored-refresh", project="my-ee-project")
    monkeypatch.setenv("EE_ACCESS_TOKEN", "ya29.env")
    monkeypatch.setenv("EE_PROJECT", "env-project")
    creds = load_credentials(ClientSettings())
    assert creds.token == "ya29.env" and creds.refresh_token is None
    assert resolve_project(ClientSettings()) == "env-project"


def test_without_any_login_one_line_names_every_way(home: Path) -> None:
    with pytest.raises(EarthEngineSetupError, match="earthengine authenticate") as e:
        load_credentials(ClientSettings())
    assert "\n" not in str(e.value)
    with pytest.raises(EarthEngineSetupError, match="earthengine set_project"):
        resolve_project(ClientSettings())
    _store(home, project="only-a-project")  # set_project without a login: not credentials
    with pytest.raises(EarthEngineSetupError):
        load_credentials(ClientSettings())
