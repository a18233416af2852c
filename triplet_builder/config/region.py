"""The region file as a whole: its area and dates, `RegionConfig` (every section, the dates it accepts,
its cache root and config hash), and `load_region`, which reads, validates and resolves a region file and
raises one `ConfigError` naming every invalid field."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from triplet_builder.config.base import FIRST_AEF_YEAR, ConfigError, _Model, _resolve
from triplet_builder.config.chips import ChipConfig, FactsConfig, FilterConfig, StageEntry
from triplet_builder.config.output import OutputConfig, SplitConfig
from triplet_builder.config.sources import (
    EarthEngineConfig,
    EmbeddingConfig,
    ScenesConfig,
    SceneSourceConfig,
)
from triplet_builder.config.text import TextConfig


class AreaConfig(_Model):
    """Either a lon/lat bbox [west, south, east, north] or a vector file (GeoJSON, GeoPackage, shapefile).

    A bbox whose west is greater than its east crosses the antimeridian (RFC 7946 section 5): [170, -20,
    -170, -10] is the 20 degrees from 170 E eastwards to 170 W."""

    bbox: tuple[float, float, float, float] | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one(self) -> AreaConfig:
        if (self.bbox is None) == (self.path is None):
            raise ValueError("give exactly one of area.bbox [west, south, east, north] or area.path")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not all(math.isfinite(v) for v in self.bbox):
                raise ValueError(f"bbox {list(self.bbox)} holds a non-finite number: give degrees")
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90 and w != e):
                raise ValueError(
                    f"bbox {list(self.bbox)} is not [west, south, east, north] in degrees with south<north, "
                    "west != east (west > east crosses the antimeridian)"
                )
        return self


class DateRange(_Model):
    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.start.year < FIRST_AEF_YEAR:
            raise ValueError(
                f"start {self.start} is before {FIRST_AEF_YEAR}: AlphaEarth embeddings begin in {FIRST_AEF_YEAR}"
            )
        return self


class RegionConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    area: AreaConfig
    years: list[int] | None = None
    dates: DateRange | None = None
    scenes: ScenesConfig
    embeddings: EmbeddingConfig
    text: TextConfig = TextConfig()
    earthengine: EarthEngineConfig = EarthEngineConfig()
    cache_dir: str | None = Field(
        None,
        description="Request caches of remote sources (Earth Engine, LLM, COG index); "
        "default: $TRIPLET_BUILDER_CACHE or ~/.cache/triplet-builder.",
    )
    chip: ChipConfig = ChipConfig()
    facts: FactsConfig = FactsConfig()
    filter: FilterConfig = FilterConfig()
    stages: list[StageEntry] = Field(
        default_factory=list, description="Extra stages (plugins), each with its own config section."
    )
    split: SplitConfig = SplitConfig()
    output: OutputConfig
    workers: int = Field(2, ge=1, le=512)
    scheduler: str | None = Field(
        None, description="Address of an existing Dask scheduler (tcp://host:port)."
    )
    chips_per_task: int = Field(
        512, ge=1, description="Windows of one scene are split into tasks of this many."
    )
    gdal_cache_mb: int = Field(64, ge=1, description="GDAL block cache per worker process (MB).")
    _hash: str | None = PrivateAttr(default=None)

    @field_validator("years")
    @classmethod
    def _years(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one year")
        bad = [y for y in v if y < FIRST_AEF_YEAR]
        if bad:
            raise ValueError(
                f"{bad} before {FIRST_AEF_YEAR}: AlphaEarth embeddings exist from {FIRST_AEF_YEAR} on; drop these years"
            )
        return sorted(set(v))

    @model_validator(mode="after")
    def _when(self) -> RegionConfig:
        if (self.years is None) == (self.dates is None):
            raise ValueError("give exactly one of years: [...] or dates: {start, end}")
        return self

    def accepts_date(self, d: date) -> bool:
        if self.years is not None:
            return d.year in self.years
        assert self.dates is not None
        return self.dates.start <= d <= self.dates.end

    def cache_root(self) -> Path:
        """Where remote sources keep their request caches."""
        from triplet_builder.cache import default_cache_root

        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_root()

    def config_hash(self) -> str:
        """Hash of everything that changes the rows (not workers / scheduler / task size / output folder), taken on the
        file as written with every path by its portable name (triplet_builder/portable.py), so it does not depend
        on where the repo lives nor on the form of the paths."""
        if self._hash is not None:
            return self._hash
        d = self.model_dump(
            mode="json",
            exclude={
                "workers": True,
                "scheduler": True,
                "chips_per_task": True,
                "gdal_cache_mb": True,
                "cache_dir": True,
                "earthengine": {
                    "max_concurrent",
                    "timeout_s",
                    "max_retries",
                    "backoff_s",
                    "max_backoff_s",
                    "url",
                    "service_account_key",
                },
                "text": {
                    "llm": {
                        "max_concurrent",
                        "timeout_s",
                        "max_retries",
                        "backoff_s",
                        "max_backoff_s",
                        "api_key_env",
                    }
                },
                "description": True,
                "output": {"dir", "row_group_bytes"},  # row-group layout: same rows
                # no plugin stages: the hash of a region file without `stages:` stays what it was
                **({} if self.stages else {"stages": True}),
            },
        )
        from triplet_builder.portable import portable_config

        # paths by their machine-independent names: absolute, relative or `..` forms hash alike
        blob = json.dumps(portable_config(d), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(
        str(x) for x in loc if not (isinstance(x, str) and x in {"function-after", "function-before"})
    )


def load_region(path: str | Path, overrides: dict[str, Any] | None = None) -> RegionConfig:
    """Read and validate a region file; raise ConfigError (one line, every invalid field) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"region file {path} not found: pass an existing pipelines/regions/*.yaml")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"region file {path} cannot be read ({e.strerror}): check its permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"region file {path} line {line} (byte {e.start}) is not UTF-8: save the file as UTF-8"
        ) from None
    try:
        # safe_load: tags such as !!python/object are refused, never constructed
        raw = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"region file {path}{where} uses a YAML tag that is not allowed ({(e.problem or '').split(' ')[-1]}): "
            "write plain values"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"region file {path}{where} is not valid YAML: fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"region file {path} must be a YAML mapping of fields (name, area, years, ...)")
    for key, value in (overrides or {}).items():
        cur = raw
        *parents, leaf = key.split(".")
        for k in parents:
            cur = cur.setdefault(k, {})
            if not isinstance(cur, dict):
                raise ConfigError(
                    f"--set {key}: {k} is not a section of region file {path}: check the field path"
                )
        cur[leaf] = value
    base = path.parent
    try:
        cfg = RegionConfig.model_validate(raw)
    except ValidationError as e:
        problems = [
            f"{_fmt_loc(err['loc']) or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        ]
        raise ConfigError(f"region file {path} is invalid: " + "; ".join(problems)) from None
    # resolve paths relative to the region file, then check the local ones exist
    upd: dict[str, Any] = {}
    missing: list[str] = []
    if cfg.area.path is not None:
        ap = _resolve(base, cfg.area.path)
        if "://" not in ap and not Path(ap).exists():
            missing.append(f"area.path: {cfg.area.path} not found")
        upd["area"] = cfg.area.model_copy(update={"path": ap})
    if isinstance(cfg.scenes, SceneSourceConfig):
        upd["scenes"] = cfg.scenes.model_copy(update={"paths": [_resolve(base, p) for p in cfg.scenes.paths]})
    if cfg.embeddings.root is not None:
        root = _resolve(base, cfg.embeddings.root)
        if "://" not in root and not Path(root).is_dir():
            missing.append(f"embeddings.root: folder {cfg.embeddings.root} not found")
        upd["embeddings"] = cfg.embeddings.model_copy(update={"root": root})
    sak = cfg.earthengine.service_account_key
    if sak is not None:
        kp = _resolve(base, sak)
        if not Path(kp).is_file():
            missing.append(f"earthengine.service_account_key: {sak} not found")
        upd["earthengine"] = cfg.earthengine.model_copy(update={"service_account_key": kp})
    if cfg.cache_dir is not None:
        upd["cache_dir"] = _resolve(base, cfg.cache_dir)
    if cfg.facts.labels is not None:
        lp = _resolve(base, cfg.facts.labels.path)
        if "://" not in lp and not Path(lp).exists():
            missing.append(f"facts.labels.path: {cfg.facts.labels.path} not found")
        upd["facts"] = cfg.facts.model_copy(
            update={"labels": cfg.facts.labels.model_copy(update={"path": lp})}
        )
        from triplet_builder.facts.label_classes import check_classes

        bad_classes = check_classes(cfg.facts.labels.classes)
        missing.extend(bad_classes)
        if Path(lp).is_file() and not bad_classes:  # read and check it now, not in the workers after tiling
            from triplet_builder.facts.labels import LabelSet

            try:
                LabelSet.from_config(upd["facts"].labels)
            except ValueError as e:
                missing.append(f"facts.labels: {e}")
    upd["output"] = cfg.output.model_copy(update={"dir": _resolve(base, cfg.output.dir)})
    if cfg.stages:  # find each plugin, validate its config, check the assembled list's order
        from triplet_builder.stages.plugins import check_entries

        stages, problems = check_entries(cfg.stages, base, labels=cfg.facts.labels is not None)
        missing.extend(problems)
        upd["stages"] = stages
    if missing:
        raise ConfigError(f"region file {path} is invalid: " + "; ".join(missing))
    resolved = cfg.model_copy(update=upd)
    resolved._hash = cfg.config_hash()
    return resolved
