"""What every part of the region file's schema shares: the frozen, extra-forbidding base model, the error a
region file that cannot be used raises, the first AlphaEarth year, and how a path of the region file is
resolved against its folder (`RegionPath`, the path type of a stage's config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

FIRST_AEF_YEAR = 2017


class ConfigError(ValueError):
    """A region file that cannot be used; the message is one line naming the file and the fields."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _region_path(v: str, info: ValidationInfo) -> str:
    """Resolve against the region file's folder (passed as validation context `base_dir` when the region
    file loads) and check a local path exists; without a context (on the workers) keep it as it is."""
    base = (info.context or {}).get("base_dir")
    if base is None:
        return v
    p = _resolve(Path(base), v)
    if "://" not in p and not p.startswith("/vsi") and not Path(p).exists():
        raise ValueError(f"{v} not found (a relative path is read from the region file's folder)")
    return p


# a path field of a stage's config (plugins): relative to the region file, checked to exist when it loads
RegionPath = Annotated[str, AfterValidator(_region_path)]


def _resolve(base: Path, p: str) -> str:
    if "://" in p or p.startswith("/vsi"):
        return p
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q))
