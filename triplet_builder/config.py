"""The region file (pipelines/regions/*.yaml): declared, validated before any work, all errors at once.

Relative paths in a region file are resolved against the folder of the region file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

FIRST_AEF_YEAR = 2017


class ConfigError(ValueError):
    """A region file that cannot be used; the message is one line naming the file and the fields."""


log = logging.getLogger(__name__)


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


class LlmConfig(_Model):
    """An OpenAI or OpenAI-compatible server (vLLM, Ollama, llama.cpp). The key is read from the named
    environment variable and never written anywhere."""

    model: str = Field(
        description="Model id as the server knows it, e.g. gpt-4o-mini or Qwen/Qwen2.5-7B-Instruct."
    )
    base_url: str | None = Field(
        None, description="Server root, e.g. http://localhost:8000/v1; default: $OPENAI_BASE_URL or OpenAI."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key.")
    vision: bool = Field(False, description="Also send the chip image (vision models only).")
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16)
    max_concurrent: int = Field(8, ge=1, le=256, description="Requests in flight per worker process.")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20, description="Retries on 429 / 5xx / timeouts / invalid JSON.")
    backoff_s: float = Field(1.0, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    prompt: str = Field(
        "fusar_geovl_v1.yaml",
        description="Prompt file of triplet_builder/text/prompts/ (a new prompt version is a new file).",
    )
    repair_attempts: int = Field(
        1,
        ge=0,
        le=5,
        description="Re-asks, with the checker's findings, when the text contradicts the facts.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_exists(cls, v: str) -> str:
        folder = Path(__file__).parent / "text" / "prompts"
        if not (folder / v).is_file():
            have = sorted(p.name for p in folder.glob("*.yaml"))
            raise ValueError(f"prompt {v!r} is not in triplet_builder/text/prompts/ (have {have})")
        return v


QaTask = Literal["counting", "localization", "detection", "classification", "land_cover", "scene_type"]
QA_TASK_KINDS: tuple[QaTask, ...] = get_args(QaTask)


class QaConfig(_Model):
    """Which task QA a chip gets (text/qa.py). tasks: counting / localization / detection of every class
    the facts count (labelled objects, CFAR bright point targets, countable OSM features), classification
    of a labelled object's box, `land_cover` (the dominant class of the chip and of a cell, from
    ext.land_cover) and `scene_type` (the derived functionality). Negatives (a class asked about with
    answer 0 / None) are taken from the facts only: absent classes of labels.classes_labelled, absent
    features of ext.osm.queried; negatives_ratio: negative classes per positive class (rounded up,
    seeded choice); max_per_chip: the most QA items of a chip (a seeded sample keeps the task mix)."""

    tasks: list[QaTask] = Field(default_factory=lambda: list(QA_TASK_KINDS), min_length=1)
    negatives_ratio: float = Field(1.0, ge=0, le=10)
    max_per_chip: int = Field(24, ge=1, le=200)


class TextConfig(_Model):
    writer: Literal["offline", "llm"] = "offline"
    qa: QaConfig = Field(default_factory=QaConfig)
    negative_classes: list[str] | None = Field(
        None,
        description="DEPRECATED, ignored: negatives now come from the facts (labels.classes_labelled, "
        "ext.osm.queried, the CFAR detections); see text.qa.negatives_ratio.",
    )
    llm: LlmConfig | None = None

    @model_validator(mode="after")
    def _deprecated(self) -> TextConfig:
        if self.negative_classes is not None:
            log.warning(
                "text.negative_classes is deprecated and ignored: negative QA now asks only about classes "
                "the facts list as looked for (labels.classes_labelled, ext.osm.queried, CFAR detections); "
                "remove it and set text.qa.negatives_ratio instead"
            )
        return self

    @model_validator(mode="after")
    def _llm(self) -> TextConfig:
        if self.writer == "llm" and self.llm is None:
            raise ValueError("text.writer llm needs a text.llm block (model, base_url, ...)")
        return self


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


def _resolve(base: Path, p: str) -> str:
    if "://" in p or p.startswith("/vsi"):
        return p
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q))


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
