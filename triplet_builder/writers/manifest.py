"""The run manifest (out_dir/manifest.json): written last, atomically, with secrets redacted.

The manifest says what a run produced (files, rows per split, rejects, per-stage counters, config hash,
versions, licences). Its presence marks a finished run; it is written to a temporary file and
`os.replace`d so a reader never sees half of it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np

MANIFEST_NAME = "manifest.json"
REDACTED = "<redacted>"
SECRET_KEY = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)


class ManifestError(ValueError):
    """The manifest on disk cannot be read."""


def redact(obj: Any) -> Any:
    """A deep copy of `obj` where the value of every mapping key matching SECRET_KEY is "<redacted>".

    Numbers, booleans and None are kept (a count such as `prompt_tokens` or `n_keys` is not a secret);
    any other value under such a key, a nested mapping or list included, is replaced as a whole.
    """
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and SECRET_KEY.search(k) and not _harmless(v):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return copy.deepcopy(obj)


def _harmless(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | np.integer | np.floating)


def _json_default(obj: Any) -> Any:
    """JSON for the few non-JSON types a manifest tends to hold."""
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write out_dir/manifest.json (redacted, sorted keys, indent 2) atomically; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(redact(manifest), sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)
    path = out_dir / MANIFEST_NAME
    tmp = out_dir / f".{MANIFEST_NAME}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest of `out_dir`, or None when there is none (the run has not finished)."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); delete it and rerun to rebuild it") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data
