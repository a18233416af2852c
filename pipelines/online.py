"""`validate --online`: one cheap request to each service a region file configures, with the credentials
the build would use, so a wrong key, project or URL shows before a build starts. Without --online,
`validate` contacts nothing (remote scene sources are then not listed).

Requests: Earth Engine `listAssets` of one configured collection (page size 1; `ee` first fetches its
discovery document), the STAC API's landing page, a HEAD of the AlphaEarth COG index (https roots), and
the LLM API's model list (no tokens spent). Each answer is one line: `ok` or what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from triplet_builder.config import RegionConfig
from triplet_builder.embeddings.index import INDEX_NAME
from triplet_builder.remote import USER_AGENT

TIMEOUT_S = 30


@dataclass(frozen=True)
class Check:
    service: str
    ok: bool
    detail: str


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _earthengine(cfg: RegionConfig, collection: str) -> str:
    import ee

    from triplet_builder.earthengine import ClientSettings, initialize, resolve_project

    settings = ClientSettings.from_config(cfg.earthengine)
    initialize(settings)
    ee.data.listAssets({"parent": f"projects/earthengine-public/assets/{collection}", "pageSize": 1})
    return f"{settings.endpoint}, project {resolve_project(settings)}, {collection} listed"


def _stac(url: str) -> str:
    import requests

    r = requests.get(url, timeout=TIMEOUT_S, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
    r.raise_for_status()
    kind = r.json().get("type", "unknown")
    return f"{url} answered ({kind})"


def _cog_index(root: str) -> str:
    import requests

    url = f"{root.rstrip('/')}/{INDEX_NAME}"
    r = requests.head(url, timeout=TIMEOUT_S, allow_redirects=True, headers={"User-Agent": USER_AGENT})
    r.raise_for_status()
    return f"{url} present ({r.headers.get('Content-Length', '?')} bytes)"


def _llm(cfg: RegionConfig) -> str:
    from openai import OpenAI

    llm = cfg.text.llm
    assert llm is not None
    key = os.environ.get(llm.api_key_env)
    base = llm.base_url or os.environ.get("OPENAI_BASE_URL")
    if not key and not base:
        raise ValueError(f"environment variable {llm.api_key_env} is not set: export your API key there")
    client = OpenAI(api_key=key or "no-key", base_url=base, timeout=TIMEOUT_S, max_retries=0)
    ids = [m.id for m in client.models.list().data]
    where = base or "the OpenAI API"
    listed = "listed" if llm.model in ids else f"NOT among the {len(ids)} models it lists"
    return f"{where}: model {llm.model} {listed}"


def planned_checks(cfg: RegionConfig) -> list[tuple[str, Callable[[], str]]]:
    """(service, request) for each service the region configures."""
    out: list[tuple[str, Callable[[], str]]] = []
    ee_collection = None
    if cfg.scenes.type == "earthengine":
        ee_collection = getattr(cfg.scenes, "collection", None)
    elif cfg.embeddings.type == "earthengine":
        ee_collection = cfg.embeddings.collection
    if ee_collection:
        out.append(("earthengine", lambda: _earthengine(cfg, str(ee_collection))))
    if cfg.scenes.type == "stac":
        url = str(getattr(cfg.scenes, "url", ""))
        out.append(("stac", lambda: _stac(url)))
    root = cfg.embeddings.root or ""
    if cfg.embeddings.type == "cog" and root.startswith(("http://", "https://")):
        out.append(("alphaearth-cog", lambda: _cog_index(root)))
    if cfg.text.writer == "llm" and cfg.text.llm is not None:
        out.append(("llm", lambda: _llm(cfg)))
    return out


def check_services(cfg: RegionConfig) -> list[Check]:
    """Run each planned check; a failure is one line naming the service and what it said."""
    results = []
    for service, request in planned_checks(cfg):
        try:
            results.append(Check(service, True, request()))
        except Exception as e:  # any failure of a check is reported, the others still run
            results.append(Check(service, False, _first_line(e)))
    return results


def validate_services(cfg: RegionConfig, region: str, *, online: bool) -> int | None:
    """The online part of `validate`: without --online, a remote scene source is not queried (returns 0
    after saying so); with it, one line per service (returns 1 if any failed, else None: go on and plan)."""
    import sys

    if not online:
        print(
            f"{region}: valid; scenes come from {cfg.scenes.type} and are not listed without --online "
            "(nothing was contacted)"
        )
        return 0
    checks = check_services(cfg)
    for c in checks:
        if c.ok:
            print(f"  {c.service}: ok, {c.detail}")
        else:
            print(f"error: {c.service}: {c.detail}", file=sys.stderr)
    return 1 if any(not c.ok for c in checks) else None
