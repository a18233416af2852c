"""An on-disk cache of remote responses, one file per request hash, shared by the remote sources
(Earth Engine pixels, COG anchor reads): a rerun after a crash pays for nothing twice."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """Where request caches live without a region's `cache_dir`: $TRIPLET_BUILDER_CACHE, else
    ~/.cache/triplet-builder (each source uses a subfolder: earthengine/, llm/, cog/)."""
    env = os.environ.get("TRIPLET_BUILDER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "triplet-builder"


class DiskCache:
    """Responses on disk, one file per request hash: a SHA-256 of the payload, then the payload.

    Writes go to a temporary file renamed into place (a crash leaves no half entry); an entry whose
    digest does not match (truncated, corrupted) is deleted and refetched, never trusted.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy.cache"

    def get(self, key: str) -> bytes | None:
        p = self.path(key)
        try:
            blob = p.read_bytes()
        except OSError:
            return None
        digest, payload = blob[:32], blob[32:]
        if len(blob) < 32 or hashlib.sha256(payload).digest() != digest:
            logger.warning("cache entry %s is corrupt; fetching it again", p)
            p.unlink(missing_ok=True)
            return None
        return payload

    def put(self, key: str, payload: bytes) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(payload).digest())
                f.write(payload)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
