"""What is done to each chip, as the region file declares it: the chip grid (size, stride, overlap), the
facts (thresholds, CFAR, a label file and its columns), the featureless-chip filter, and the extra stages
(plugins)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from triplet_builder.config.base import _Model


class ChipConfig(_Model):
    size: int = Field(256, ge=8, le=4096, description="Chip size in output pixels.")
    stride: int | None = Field(None, ge=1, description="Step between chips in output pixels (default: size).")
    pixel_size_m: float | None = Field(None, gt=0, description="Target pixel size; default: native.")
    max_nodata_fraction: float = Field(0.5, ge=0, le=1)
    max_overlap: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Largest fraction of a chip's area it may share with another window of its scene; "
        "the flush last row / column windows that would share more are not laid (near duplicates).",
    )

    @property
    def step(self) -> int:
        return self.stride or self.size

    @model_validator(mode="after")
    def _stride_within_overlap(self) -> ChipConfig:
        shared = max(0.0, 1.0 - self.step / self.size)
        if shared > self.max_overlap + 1e-9:
            raise ValueError(
                f"stride {self.step} on size {self.size} makes neighbours share {shared:.2f} of a chip, more "
                f"than max_overlap {self.max_overlap}: raise stride to >= "
                f"{math.ceil(self.size * (1 - self.max_overlap))} or max_overlap"
            )
        return self


class CfarConfig(_Model):
    pfa: float = Field(1e-6, gt=0, lt=1)
    guard: int = Field(2, ge=0)
    train: int = Field(8, ge=1)
    min_db: float = 0.0
    min_area_px: int = Field(1, ge=1)
    max_area_px: int = Field(400, ge=1)
    max_extent_px: int = Field(
        40,
        ge=1,
        description="longest side of a target's box in pixels; the tile stage reads max_extent_px + guard "
        "+ train context pixels around each chip so overlapping chips agree on their targets",
    )

    @property
    def margin(self) -> int:
        """Context pixels read on every side of a chip for detection (see triplet_builder/facts/cfar.py)."""
        return self.max_extent_px + self.guard + self.train


class LabelColumnsConfig(_Model):
    """Column names of a label file; each absent one is recognised by its common names."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    lat: str | None = None
    lon: str | None = None
    class_: str | None = Field(None, alias="class")
    length_m: str | None = None
    time: str | None = None
    scene_id: str | None = None

    def mapping(self) -> dict[str, str | None]:
        """role -> column name, as triplet_builder.facts.label_columns takes it."""
        return {
            "lat": self.lat,
            "lon": self.lon,
            "class": self.class_,
            "length_m": self.length_m,
            "time": self.time,
            "scene_id": self.scene_id,
        }


class LabelsConfig(_Model):
    path: str
    class_column: str | None = None
    default_label: str = "object"
    point_box_m: float | None = Field(None, gt=0)
    columns: LabelColumnsConfig = LabelColumnsConfig()
    # auto: by the scene id column if there is one, else by the time column; none: timeless labels
    match: Literal["auto", "scene_id", "time", "none"] = "auto"
    # one Sentinel-1 pass (products start minutes apart), never the next (hours to days later)
    time_tolerance_s: float = Field(600.0, ge=0)
    # the vocabulary classes the file labels exhaustively (its negatives); None: every class found in it
    classes: list[str] | None = None

    @model_validator(mode="after")
    def _one_class_column(self) -> LabelsConfig:
        if self.class_column is not None and self.columns.class_ is not None:
            raise ValueError("set the class column once: columns.class or class_column, not both")
        return self


class FactsConfig(_Model):
    water_threshold_db: float | Literal["otsu"] | None = Field(
        None,
        description="Water threshold: a number (dB), `otsu` (bimodal split of each scene's histogram), or "
        "none: the table by backscatter convention and polarisation (triplet_builder/facts/thresholds.py).",
    )
    bright_threshold_db: float | None = Field(
        None, description="Strong-scatterer threshold (dB); none: the table by convention and polarisation."
    )
    max_place_km: float = Field(50.0, gt=0)
    cfar: CfarConfig = CfarConfig()
    labels: LabelsConfig | None = None


class FilterConfig(_Model):
    min_std_db: float = Field(
        0.5, ge=0, description="Chips with a smaller dB standard deviation are featureless."
    )
    dedupe: bool = True


class StageEntry(_Model):
    """One extra stage of the list (a plugin): see triplet_builder/stages/assemble.py and
    docs/adding-a-stage.md."""

    name: str = Field(
        description="Entry point name (group triplet_builder.stages) or 'package.module:Class'."
    )
    after: str | None = Field(
        None,
        description="The stage it goes right after (a core stage or an earlier entry); default: before text.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="The stage's own config, validated by its config_model."
    )
