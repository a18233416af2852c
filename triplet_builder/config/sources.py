"""Where the inputs come from, as the region file declares them: the scene source (local files, Earth
Engine or a STAC API), the AlphaEarth embeddings (COG mirror or Earth Engine), and how to reach Earth
Engine (project, credentials, concurrency, retries)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from triplet_builder.config.base import _Model


class SceneSourceConfig(_Model):
    """Local (or GDAL-readable remote) GeoTIFF / COG / SAFE files."""

    type: Literal["local"] = "local"
    paths: list[str] = Field(
        min_length=1, description="Files, folders or glob patterns of GeoTIFF/COG/SAFE scenes."
    )
    scale: Literal["auto", "db", "linear_power", "amplitude"] = "auto"
    backscatter: Literal["auto", "sigma0", "gamma0", "beta0", "unknown"] = "auto"
    sensor: str | None = None
    polarisations: list[str] | None = None

    @field_validator("paths", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


LocalScenesConfig = SceneSourceConfig


class _RemoteScenes(_Model):
    """What every remote scene search shares: which scenes of the region and dates to keep."""

    polarisations: list[str] = Field(
        default_factory=lambda: ["VV", "VH"], min_length=1, description="Bands to read, e.g. [VV, VH]."
    )
    orbit_direction: Literal["ascending", "descending"] | None = None
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="Keep scenes covering at least this fraction of the region area."
    )
    max_scenes: int | None = Field(
        None, ge=1, description="At most this many scenes (best coverage first, then earliest)."
    )

    @field_validator("polarisations")
    @classmethod
    def _pols(cls, v: list[str]) -> list[str]:
        out = [p.upper() for p in v]
        bad = [p for p in out if p not in {"VV", "VH", "HH", "HV"}]
        if bad:
            raise ValueError(f"polarisations {bad} unknown: use VV, VH, HH or HV")
        return out


class EarthEngineScenesConfig(_RemoteScenes):
    """Sentinel-1 GRD from Earth Engine (`COPERNICUS/S1_GRD`: sigma0 in dB, 10 m), read window by window
    through computePixels on the chip grid (a UTM grid over the region)."""

    type: Literal["earthengine"]
    collection: str = "COPERNICUS/S1_GRD"
    instrument_mode: str = "IW"
    pixel_size_m: float = Field(10.0, gt=0, description="Grid of the exported windows (metres, UTM).")


class StacScenesConfig(_RemoteScenes):
    """Sentinel-1 RTC (or GRD) COGs found through a STAC API (pystac-client) and read by range requests."""

    type: Literal["stac"]
    url: str = Field(description="STAC API root, e.g. https://planetarycomputer.microsoft.com/api/stac/v1")
    collection: str = Field(description="Collection id, e.g. sentinel-1-rtc")
    assets: dict[str, str] | None = Field(
        None, description="Polarisation -> asset key; default: the lower-case polarisation (vv, vh)."
    )
    query: dict[str, Any] | None = Field(None, description="Extra STAC query (the API's `query` extension).")
    scale: Literal["db", "linear_power", "amplitude"] = "linear_power"
    backscatter: Literal["auto", "sigma0", "gamma0", "beta0", "unknown"] = Field(
        "auto", description="auto: gamma0 where the item's sar:product_type is RTC, else unknown."
    )
    max_items: int = Field(500, ge=1, description="Stop the search after this many items.")


ScenesConfig = Annotated[
    SceneSourceConfig | EarthEngineScenesConfig | StacScenesConfig, Field(discriminator="type")
]


class EmbeddingConfig(_Model):
    """AlphaEarth: `cog` reads the public COG mirror layout (local folder, https:// or s3:// root);
    `earthengine` reads `GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL` with computePixels."""

    type: Literal["cog", "earthengine"] = "cog"
    root: str | None = Field(
        None, description="cog: local folder, https:// or s3:// root in the layout of the public COG mirror."
    )
    collection: str = Field(
        "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", description="earthengine: the annual embedding collection."
    )
    grid: int = Field(16, ge=1, le=64, description="G: anchors form a G x G grid over each chip.")
    synthetic: bool = Field(
        False, description="Set for the demo's synthetic stand-in; recorded in every row."
    )

    @model_validator(mode="after")
    def _root(self) -> EmbeddingConfig:
        if self.type == "cog" and not self.root:
            raise ValueError("embeddings.type cog needs root: a folder, https:// or s3:// mirror root")
        return self


class EarthEngineConfig(_Model):
    """How to reach Earth Engine (used by every `earthengine` source). Credentials come from Application
    Default Credentials or a service-account key file; the key file's content is never logged."""

    project: str | None = Field(
        None, description="Cloud project; default: $EE_PROJECT or $GOOGLE_CLOUD_PROJECT."
    )
    service_account_key: str | None = Field(
        None, description="Path to a service-account JSON key; default: $EE_SERVICE_ACCOUNT_KEY, then ADC."
    )
    high_volume: bool = Field(
        True, description="Use the high-volume endpoint (recommended for computePixels)."
    )
    url: str | None = Field(None, description="Override the API root (tests point it at a loopback server).")
    max_concurrent: int = Field(8, ge=1, le=40, description="Requests in flight per worker process.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline per request.")
    max_retries: int = Field(6, ge=0, le=20, description="Retries on 429 / 5xx / quota / deadline errors.")
    backoff_s: float = Field(1.0, gt=0, description="Base of the jittered exponential backoff.")
    max_backoff_s: float = Field(60.0, gt=0)
