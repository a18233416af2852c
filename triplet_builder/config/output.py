"""What the build writes, as the region file declares it: the spatial-block split, the output folder with
its shard and row-group limits, and the dB -> 8-bit stretch of the PNG chips."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triplet_builder.config.base import _Model


class StretchConfig(_Model):
    """dB -> 8-bit PNG codes. fixed: the same range for every chip; percentile: per chip (stored per row)."""

    mode: Literal["fixed", "percentile"] = "fixed"
    min_db: float = -25.0
    max_db: float = 5.0
    ratio_min_db: float = 0.0
    ratio_max_db: float = 15.0
    low_pct: float = Field(2.0, ge=0, le=100)
    high_pct: float = Field(98.0, ge=0, le=100)

    @model_validator(mode="after")
    def _ranges(self) -> StretchConfig:
        if (
            self.max_db <= self.min_db
            or self.ratio_max_db <= self.ratio_min_db
            or self.high_pct <= self.low_pct
        ):
            raise ValueError("each stretch maximum must be greater than its minimum")
        return self


class SplitConfig(_Model):
    block_km: float = Field(
        5.0,
        gt=0,
        description="Spatial block size; a chip gets a split only if all blocks it covers share it. Keep it about "
        "twice the chip side or more (default: 256 px chips at 10 m are 2.56 km).",
    )
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    salt: str = "sar-triplets"
    min_blocks: int = Field(
        5, ge=1, description="A split with fewer distinct blocks is flagged in the summary and the card."
    )

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be < 1")
        return self

    @property
    def shares(self) -> dict[str, float]:
        """The share of blocks each split gets."""
        return {"train": 1.0 - self.validation - self.test, "validation": self.validation, "test": self.test}


class OutputConfig(_Model):
    dir: str
    max_rows_per_shard: int = Field(2000, ge=1)
    row_group_rows: int = Field(256, ge=1)
    row_group_bytes: int = Field(
        64 * 2**20,
        ge=1,
        description="a row group also ends before its rows pass this many (uncompressed, estimated) bytes: "
        "the hub's viewer refuses row groups over 300 MB and `datasets` aims at 100 MB",
    )
    stretch: StretchConfig = StretchConfig()
    backscatter_column: bool = Field(
        False,
        description="also write the chip's float32 dB (backscatter_db, schemas/backscatter.py); "
        "about 3.4x the PNG's bytes per chip on the demo",
    )
