"""The built-in annotation stage `osm`: the OpenStreetMap features in each chip's footprint, as the fact
section `$.ext.osm` (schemas/facts_ext/osm.schema.json).

Source: an Overpass API (one query per batch of chips, over their joint bounding box; cached, rate
limited, retried: triplet_builder/sources/overpass.py) or a local .osm.pbf extract (read once per worker:
triplet_builder/sources/osm_pbf.py). The tag rules and per-chip measures are in
triplet_builder/sources/osm.py. `queried` lists the features asked for: a queried feature absent from
`features` has no element in the footprint at the data's snapshot ("not mapped in OpenStreetMap").

A chip the source has no data for (the Overpass API failed for good, or the chip lies outside the
extract's bounding box) stops the task with one line (`missing: error`, the default), or gets NO section
(`missing: skip`: one log line per build and source, counted in the stage's `chips_without_osm`): an
empty section there would state negatives nobody checked.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from schemas import json_schema
from schemas.vocabulary import OSM_FEATURES
from triplet_builder.area import area_polygon
from triplet_builder.cache import DiskCache
from triplet_builder.config import RegionConfig
from triplet_builder.geo import scene_geo
from triplet_builder.record import ChipRecord
from triplet_builder.sources import SourceError
from triplet_builder.sources.osm import OsmData, summarise
from triplet_builder.sources.osm_pbf import PbfError, load_pbf, read_header
from triplet_builder.sources.overpass import OverpassClient, OverpassSettings, build_query, parse_answer
from triplet_builder.stages.annotation import AnnotationStage
from triplet_builder.stages.base import StageStats

logger = logging.getLogger(__name__)
SNAPSHOT_COUNTER = "snapshot "  # st.extra["snapshot <time>"] = chips annotated from data of that time
NO_SNAPSHOT = "unknown"
PBF_MARGIN_DEG = 0.1  # items of an extract are loaded over the chips' box plus this margin


class OsmConfig(BaseModel):
    """`config:` of the `osm` stage in a region file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["overpass", "pbf"] = Field("overpass", description="An Overpass API or a local extract.")
    endpoint: str = Field(
        "https://overpass-api.de/api", description="(overpass) the API root; /interpreter is added."
    )
    path: str | None = Field(None, description="(pbf) a .osm.pbf extract with a bounding box in its header.")
    features: list[str] = Field(
        default_factory=lambda: list(OSM_FEATURES),
        min_length=1,
        description="Features to query (vocabulary names).",
    )
    min_interval_s: float = Field(1.0, ge=0, description="(overpass) seconds between requests of one worker.")
    timeout_s: int = Field(
        180, ge=1, le=3600, description="(overpass) the query's [timeout:N] and the read timeout base."
    )
    max_retries: int = Field(5, ge=0, le=20, description="(overpass) retries of a transient failure.")
    backoff_s: float = Field(1.0, ge=0, description="(overpass) first backoff, doubled per retry, jittered.")
    max_backoff_s: float = Field(60.0, ge=0, description="(overpass) longest backoff.")
    missing: Literal["error", "skip"] = Field(
        "error", description="A chip without data: stop, or no section."
    )

    @field_validator("features")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [f for f in v if f not in OSM_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(map(repr, unknown))}: name some of {', '.join(OSM_FEATURES)}"
            )
        if len(set(v)) != len(v):
            raise ValueError("a feature is listed twice: list each once")
        return [f for f in OSM_FEATURES if f in v]  # vocabulary order: the same set is the same config

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(
                f"{v!r} is not an http(s) URL: give the Overpass API root, e.g. https://overpass-api.de/api"
            )
        return v.rstrip("/")

    @field_validator("path")
    @classmethod
    def _resolve(cls, v: str | None, info: ValidationInfo) -> str | None:
        """Relative to the region file's folder (the `base_dir` context when the region file loads)."""
        base = (info.context or {}).get("base_dir")
        if v is None or base is None or Path(v).is_absolute():
            return v
        return str(Path(base) / v)

    @model_validator(mode="after")
    def _source(self) -> OsmConfig:
        if self.source == "pbf":
            if self.path is None:
                raise ValueError("source pbf needs path: a .osm.pbf extract")
            if not Path(self.path).is_file() and self.missing == "error":
                raise ValueError(
                    f"{Path(self.path).name} not found (a relative path is read from the region file's folder): "
                    f"download an extract (e.g. {PBF_HINT}), or set missing: skip"
                )
            if Path(self.path).is_file():
                try:
                    header = read_header(self.path)
                except PbfError as e:
                    raise ValueError(str(e)) from None
                if header.bounds is None:
                    raise ValueError(
                        f"{Path(self.path).name} states no bounding box in its header, so an absent feature could "
                        "not be told from an area the extract does not cover: cut it with `osmium extract --bbox`"
                    )
        elif self.path is not None:
            raise ValueError("path is for source pbf; source overpass reads endpoint")
        return self


PBF_HINT = "a Geofabrik extract cut to the region with `osmium extract --bbox`"

_LOGGED: set[str] = set()
_LOGGED_LOCK = threading.Lock()


def _log_once(message: str) -> None:
    """One line per build (per worker process) and message."""
    with _LOGGED_LOCK:
        if message in _LOGGED:
            return
        _LOGGED.add(message)
    logger.warning(message)


def _footprint(record: ChipRecord) -> BaseGeometry:
    assert record.georef is not None, "the osm stage runs after georeference"
    return shapely.from_wkb(record.georef.footprint_wkb)


class Osm(AnnotationStage):
    name = "osm"
    config_model = OsmConfig
    facts_schema: ClassVar[dict[str, Any]] = json_schema("facts_ext/osm")

    def __init__(self, config: BaseModel, region: RegionConfig) -> None:
        super().__init__(config, region)
        assert isinstance(config, OsmConfig)
        self.cfg = config
        self._client: OverpassClient | None = None
        self._bounds: BaseGeometry | None = None  # the extract's header box
        self._load_box: BaseGeometry | None = None  # the box its items were loaded for

    # -- sources ------------------------------------------------------------------------------------
    def client(self) -> OverpassClient:
        if self._client is None:
            c = self.cfg
            settings = OverpassSettings(
                c.endpoint, c.timeout_s, c.min_interval_s, c.max_retries, c.backoff_s, c.max_backoff_s
            )
            self._client = OverpassClient(settings, DiskCache(self.region.cache_root() / "osm"))
        return self._client

    def _overpass(self, footprints: list[BaseGeometry], extra: Counter[str]) -> OsmData:
        bbox = shapely.union_all(footprints).bounds
        query = build_query(bbox, self.cfg.features, self.cfg.timeout_s)
        data = parse_answer(self.client().query(query, extra), self.cfg.features)
        extra["queries"] += 1
        return data

    def _pbf(self, footprints: list[BaseGeometry]) -> OsmData:
        """The extract's items over the region's box with a margin (chips at the region's edge reach
        past it), widened when a batch's chips reach further still: an element is never cut off."""
        assert self.cfg.path is not None
        if not Path(self.cfg.path).is_file():  # only with missing: skip (the config refuses it otherwise)
            raise SourceError(f"extract {Path(self.cfg.path).name} not found: download one (e.g. {PBF_HINT})")
        if self._bounds is None:
            header = read_header(self.cfg.path)
            assert header.bounds is not None  # the config refused an extract without one
            self._bounds = box(*header.bounds)
        load = (
            self._load_box
            if self._load_box is not None
            else area_polygon(self.region.area).buffer(0).envelope
        )
        need = shapely.union_all([load, *footprints]).envelope
        if not need.within(load) or self._load_box is None:
            w, s, e, n = need.bounds
            m = PBF_MARGIN_DEG
            self._load_box = box(*(round(v, 2) for v in (w - m, s - m, e + m, n + m)))
        return load_pbf(self.cfg.path, tuple(self.cfg.features), tuple(self._load_box.bounds))

    # -- the batch ------------------------------------------------------------------------------------
    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        footprints = [_footprint(r) for r in records]
        try:
            data = (
                self._overpass(footprints, st.extra)
                if self.cfg.source == "overpass"
                else self._pbf(footprints)
            )
        except SourceError as e:
            if self.cfg.missing == "error":
                raise
            _log_once(f"osm: {e}; chips without data get no osm section (missing: skip)")
            st.extra["chips_without_osm"] += len(records)
            return
        for r, fp in zip(records, footprints, strict=True):
            if self._bounds is not None and not fp.within(self._bounds):
                what = f"chip {r.chip_id} lies outside the bounding box of {Path(str(self.cfg.path)).name}"
                if self.cfg.missing == "error":
                    raise PbfError(
                        f"osm: {what}: use an extract that covers the region, or set missing: skip"
                    )
                _log_once(f"osm: {what} (and maybe others); they get no osm section (missing: skip)")
                st.extra["chips_without_osm"] += 1
                continue
            self.add_section(r, summarise(data, fp, self._to_norm(r), self.cfg.features))
            st.extra[SNAPSHOT_COUNTER + (data.snapshot or NO_SNAPSHOT)] += 1
        st.extra["elements_read"] += len({i.key for i in data.items})

    @staticmethod
    def _to_norm(record: ChipRecord) -> Any:
        """lon/lat -> normalized chip (x, y) through the scene's georeferencing (affine, GCPs or RPCs)."""
        geo, w = scene_geo(record.scene), record.window

        def to_norm(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            y, x = geo.lonlat_to_chip_pixel(w, lon, lat)
            return x / w.out_width, y / w.out_height

        return to_norm

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
