"""Machine-independent names of the paths a build reads, for rows, the manifest and the config hash.

The same dataset must come out whatever form of path the region file or the command uses (relative,
absolute, with `..`, through a symlinked folder) and on whichever machine it is built, and no output may
reveal the building machine's folders. So a LOCAL path is named by its file name (a file inside a
Sentinel-1 SAFE product from the `.SAFE` folder on, e.g. `X.SAFE/measurement/y.tiff`; a member of a zip
as `X.zip/member`); URLs (`https://`, `s3://`, `earthengine://`) and product ids stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

_CALIB = re.compile(r"^(?P<prefix>SENTINEL1_CALIB:[A-Z0-9_]+:)(?P<path>.+?)(?P<rest>:[^:/]+:[^:/]+)$")
_VSIZIP = re.compile(r"^/vsizip/+(?P<zip>.+?\.zip)/(?P<member>.+)$", re.IGNORECASE)
_VSI = re.compile(r"^/vsi[a-z0-9_]+/+")
# a folder path inside free text: a leading `/`, `./`, `../` or `name/`, then folders; not part of a URL
# the folder part of an absolute (/..., ~/...) or explicitly relative (./..., ../...) path; a bare relative
# path (e.g. a tile named under its embeddings root, 2017/31n/x.tiff) names no folder of the machine
_PATH_IN_TEXT = re.compile(r"(?<![:/\w.-])(?:\.{1,2}/|/|~/)(?:[\w.@+-]+/)*(?=[\w.@*+-])")


def portable_uri(uri: str) -> str:
    """The machine-independent name of a scene / embeddings / label location (see the module doc)."""
    if "://" in uri:
        return uri
    m = _CALIB.match(uri)
    if m:
        return f"{m['prefix']}{portable_uri(m['path'])}{m['rest']}"
    m = _VSIZIP.match(uri)
    if m:
        return f"{PurePosixPath(m['zip']).name}/{m['member']}"
    uri = _VSI.sub("/", uri)
    parts = PurePosixPath(uri.replace("\\", "/")).parts
    for i, part in enumerate(parts):
        if part.upper().endswith(".SAFE"):
            return "/".join(parts[i:])
    return parts[-1] if parts else uri


def scrub_paths(text: str) -> str:
    """Free text (an error message) with the folder part of every local path dropped; URLs are kept."""
    return _PATH_IN_TEXT.sub("", text)


_PATH_KEYS = frozenset({"path", "paths", "root", "dir", "file", "raster", "folder"})


def _walk_existing(obj: Any, key: str = "") -> Any:
    """Plugin configs: a string naming a local path -> its portable name: any that exists, and any under a
    path-like key (`path`, `root`, ...: a map or extract that is absent, e.g. `missing: skip`, is still a
    path of the machine)."""
    if isinstance(obj, Mapping):
        return {k: _walk_existing(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk_existing(v, key) for v in obj]
    if isinstance(obj, str) and "://" not in obj and ("/" in obj or "\\" in obj):
        if key in _PATH_KEYS:
            return portable_uri(obj)
        try:
            if Path(obj).exists():
                return portable_uri(obj)
        except OSError:
            return obj
    return obj


def portable_config(d: dict[str, Any]) -> dict[str, Any]:
    """A dumped RegionConfig (model_dump(mode="json")) with every path field in its portable form.

    Used for the config hash (so a region file written with absolute paths and one written with relative
    paths hash alike) and for the manifest's `config` (so it holds no folder of the building machine).
    """
    d = dict(d)

    def sub(key: str, field: str) -> None:
        section = d.get(key)
        if isinstance(section, Mapping) and isinstance(section.get(field), str):
            d[key] = {**section, field: portable_uri(section[field])}

    sub("area", "path")
    sub("embeddings", "root")
    sub("output", "dir")
    sub("earthengine", "service_account_key")
    scenes = d.get("scenes")
    if isinstance(scenes, Mapping) and isinstance(scenes.get("paths"), list):
        d["scenes"] = {**scenes, "paths": [portable_uri(str(p)) for p in scenes["paths"]]}
    facts = d.get("facts")
    if isinstance(facts, Mapping) and isinstance(facts.get("labels"), Mapping):
        labels = facts["labels"]
        if isinstance(labels.get("path"), str):
            d["facts"] = {**facts, "labels": {**labels, "path": portable_uri(labels["path"])}}
    if isinstance(d.get("cache_dir"), str):
        d["cache_dir"] = portable_uri(d["cache_dir"])
    if isinstance(d.get("stages"), list):
        d["stages"] = _walk_existing(d["stages"])
    return d
