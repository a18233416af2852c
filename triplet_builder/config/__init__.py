"""The region file (pipelines/regions/*.yaml): declared, validated before any work, all errors at once.

Relative paths in a region file are resolved against the folder of the region file. The schema is split
by job: base.py (the shared base model, `ConfigError`, `RegionPath`), sources.py (scenes, embeddings,
Earth Engine), text.py (the text writer, the LLM, the QA), chips.py (chips, facts, CFAR, labels, filter,
extra stages), output.py (split, output, stretch) and region.py (`RegionConfig` and `load_region`); every
name is importable from `triplet_builder.config`.
"""

from __future__ import annotations

from triplet_builder.config.base import FIRST_AEF_YEAR, ConfigError, RegionPath
from triplet_builder.config.chips import (
    CfarConfig,
    ChipConfig,
    FactsConfig,
    FilterConfig,
    LabelColumnsConfig,
    LabelsConfig,
    StageEntry,
)
from triplet_builder.config.output import OutputConfig, SplitConfig, StretchConfig
from triplet_builder.config.region import AreaConfig, DateRange, RegionConfig, _fmt_loc, load_region
from triplet_builder.config.sources import (
    EarthEngineConfig,
    EarthEngineScenesConfig,
    EmbeddingConfig,
    LocalScenesConfig,
    ScenesConfig,
    SceneSourceConfig,
    StacScenesConfig,
)
from triplet_builder.config.text import QA_TASK_KINDS, LlmConfig, QaConfig, QaTask, TextConfig

__all__ = [
    "FIRST_AEF_YEAR",
    "QA_TASK_KINDS",
    "AreaConfig",
    "CfarConfig",
    "ChipConfig",
    "ConfigError",
    "DateRange",
    "EarthEngineConfig",
    "EarthEngineScenesConfig",
    "EmbeddingConfig",
    "FactsConfig",
    "FilterConfig",
    "LabelColumnsConfig",
    "LabelsConfig",
    "LlmConfig",
    "LocalScenesConfig",
    "OutputConfig",
    "QaConfig",
    "QaTask",
    "RegionConfig",
    "RegionPath",
    "SceneSourceConfig",
    "ScenesConfig",
    "SplitConfig",
    "StacScenesConfig",
    "StageEntry",
    "StretchConfig",
    "TextConfig",
    "_fmt_loc",  # stages/plugins.py formats a stage config's errors like the region file's
    "load_region",
]
