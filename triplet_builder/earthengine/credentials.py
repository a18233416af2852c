"""Reaching Earth Engine: the client settings a worker carries (plain, picklable, no secrets), the Cloud
project and the credentials (a service-account key, $EE_ACCESS_TOKEN, the stored `earthengine
authenticate` login, or Application Default Credentials), and `initialize`, which sets the `ee` client up
once per process with its own retries off and a deadline per request."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triplet_builder.earthengine.errors import EarthEngineSetupError, _first_line

# the package's logger: its records keep the name `triplet_builder.earthengine`
logger = logging.getLogger("triplet_builder.earthengine")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
STANDARD_URL = "https://earthengine.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
)


# ------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What a worker needs to reach Earth Engine: plain values, hashable and picklable (no secrets:
    the key file is a path, read by the worker itself)."""

    project: str | None = None
    service_account_key: str | None = None
    high_volume: bool = True
    url: str | None = None
    max_concurrent: int = 8
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, cfg: Any, cache_root: str | Path | None = None) -> ClientSettings:
        """From an `EarthEngineConfig` (the region file's `earthengine:` block) and the region's cache root."""
        return cls(
            project=cfg.project,
            service_account_key=cfg.service_account_key,
            high_volume=cfg.high_volume,
            url=cfg.url,
            max_concurrent=cfg.max_concurrent,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            max_backoff_s=cfg.max_backoff_s,
            cache_dir=None if cache_root is None else str(Path(cache_root) / "earthengine"),
        )

    @property
    def endpoint(self) -> str:
        """The API root: `url` when set (tests, private endpoints), else the high-volume or standard one."""
        if self.url:
            return self.url.rstrip("/")
        return HIGH_VOLUME_URL if self.high_volume else STANDARD_URL


def resolve_project(settings: ClientSettings) -> str:
    """The Cloud project: the setting, then $EE_PROJECT, then $GOOGLE_CLOUD_PROJECT, then the key file's."""
    project = settings.project or os.environ.get("EE_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        key = _key_path(settings)
        if key is not None:
            project = _read_key(key).get("project_id")
    if not project:
        project = (stored_login() or {}).get("quota_project_id")  # `earthengine set_project`
    if not project:
        raise EarthEngineSetupError(
            "Earth Engine needs a Cloud project: set EE_PROJECT or earthengine.project in the region file, "
            "or run `earthengine set_project PROJECT` (a project registered for Earth Engine)"
        )
    return str(project)


def _key_path(settings: ClientSettings) -> str | None:
    return settings.service_account_key or os.environ.get("EE_SERVICE_ACCOUNT_KEY") or None


def _read_key(path: str) -> dict[str, Any]:
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EarthEngineSetupError(
            f"service-account key {path} not found: fix earthengine.service_account_key or EE_SERVICE_ACCOUNT_KEY"
        ) from None
    except (OSError, ValueError):
        raise EarthEngineSetupError(
            f"service-account key {path} is not a readable JSON key file: download it again from the Cloud console"
        ) from None
    if not isinstance(info, dict) or "client_email" not in info or "private_key" not in info:
        raise EarthEngineSetupError(
            f"service-account key {path} lacks client_email / private_key: use a service-account JSON key"
        )
    return info


def stored_login() -> dict[str, Any] | None:
    """The arguments of the login `earthengine authenticate` stored (refresh token, client, scopes, and the
    project of `earthengine set_project` as `quota_project_id`), read by `ee`'s own reader from
    ~/.config/earthengine/credentials; None when there is none. Its content is never logged."""
    from ee import oauth

    try:
        args = oauth.get_credentials_arguments()
    except (OSError, ValueError):
        return None
    return args if args.get("refresh_token") else None


def load_credentials(settings: ClientSettings) -> Any:
    """Credentials in this order: a service-account key file, $EE_ACCESS_TOKEN, the stored
    `earthengine authenticate` login, Application Default Credentials. Raises EarthEngineSetupError (one
    line) when there are none."""
    key = _key_path(settings)
    if key is not None:
        from google.oauth2 import service_account

        info = _read_key(key)
        return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    token = os.environ.get("EE_ACCESS_TOKEN")
    if token:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token)
    stored = stored_login()
    if stored is not None:
        from google.oauth2.credentials import Credentials

        return Credentials(None, **stored)
    import google.auth
    import google.auth.exceptions

    try:
        creds, _ = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError:
        raise EarthEngineSetupError(
            "no Earth Engine credentials: set EE_SERVICE_ACCOUNT_KEY or earthengine.service_account_key to a "
            "service-account JSON key, or run `earthengine authenticate` or `gcloud auth application-default login`"
        ) from None
    return creds


# ----------------------------------------------------------------------------------- initialisation
_INIT_LOCK = threading.Lock()
_INIT_KEY: tuple[Any, ...] | None = None


def initialize(settings: ClientSettings, credentials: Any = None) -> None:
    """Initialise the `ee` client once per process (again only when endpoint, project or deadline change).

    The client's own retries are switched off (ours are bounded and counted) and the per-request
    deadline is set. For a non-Google endpoint (`url`), the data catalogue's deprecation list is not
    fetched from storage.googleapis.com.
    """
    global _INIT_KEY
    import ee

    project = resolve_project(settings)
    key = (settings.endpoint, project, settings.timeout_s, id(credentials) if credentials else None)
    with _INIT_LOCK:
        if _INIT_KEY == key:
            return
        creds = credentials if credentials is not None else load_credentials(settings)
        fetch_catalogue = ee.deprecation._FetchDataCatalogStac
        if settings.url:
            ee.deprecation._FetchDataCatalogStac = dict  # an empty catalogue; no call to the internet
        try:
            ee.Initialize(creds, project=project, url=settings.endpoint)
        except ee.EEException as e:
            raise EarthEngineSetupError(
                f"Earth Engine at {settings.endpoint} refused to initialise for project {project}: "
                f"{_first_line(e)}; check the project is registered for Earth Engine and the credentials"
            ) from None
        finally:
            ee.deprecation._FetchDataCatalogStac = fetch_catalogue
        ee.data.setMaxRetries(0)
        ee.data.setDeadline(settings.timeout_s * 1000.0)
        ee.data.setUserAgent("sar-triplets")
        _INIT_KEY = key
        logger.info("Earth Engine initialised at %s for project %s", settings.endpoint, project)
