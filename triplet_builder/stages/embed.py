"""Embed stage: the AlphaEarth anchors of each chip, a G x G grid of points at cell centres, read for the
acquisition year. Chips are batched so the provider can group the reads of many chips by file and block."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from triplet_builder.geo import scene_geo
from triplet_builder.record import Anchors, ChipRecord
from triplet_builder.remote import REJECT_EMBEDDINGS_UNAVAILABLE, ServiceUnavailable
from triplet_builder.stages.base import BatchStage, StageStats


class EmbeddingProvider(Protocol):
    description: str
    synthetic: bool

    def sample(self, lon: np.ndarray, lat: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def anchor_positions(grid: int) -> np.ndarray:
    """(G*G, 2) normalized (y, x) of the anchor grid: cell centres, row-major from the top-left."""
    c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return np.column_stack([yy.ravel(), xx.ravel()]).astype(np.float32)


class Embed(BatchStage):
    name = "embed"

    def __init__(self, provider: EmbeddingProvider, *, grid: int = 16, batch: int = 64) -> None:
        self.provider = provider
        self.grid = grid
        self.batch = batch
        self.positions = anchor_positions(grid)  # (S, 2)

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        try:
            self._embed(records)
        except ServiceUnavailable as e:  # every retry spent: these chips are rejected, the task goes on
            for r in records:
                r.anchors = None
                r.reject(self.name, REJECT_EMBEDDINGS_UNAVAILABLE, str(e).splitlines()[0])
        drain = getattr(self.provider, "drain_counters", None)  # remote providers count requests
        if drain is not None:
            st.extra.update(drain())
        for r in records:
            if r.anchors is not None and not r.anchors.valid.any():
                # a chip without one embedding (polar, beyond the mirror's tiles, a year not covered) is no
                # triplet: reject it with the reason rather than keep anchors that all say "invalid"
                c = r.anchors.lonlat.mean(axis=0)
                r.reject(
                    self.name,
                    "no_valid_anchor",
                    f"no AlphaEarth embedding at any of the {len(r.anchors.valid)} anchors around "
                    f"({c[0]:.4f}, {c[1]:.4f}) for {r.anchors.year} in {self.provider.description}",
                )

    def _embed(self, records: list[ChipRecord]) -> None:
        s = len(self.positions)
        by_year: dict[int, list[ChipRecord]] = {}
        for r in records:
            by_year.setdefault(r.scene.year, []).append(r)
        for year, recs in by_year.items():
            lons, lats = [], []
            for r in recs:
                lon, lat = scene_geo(r.scene).chip_pixel_to_lonlat(
                    r.window, self.positions[:, 0], self.positions[:, 1]
                )
                lons.append(lon)
                lats.append(lat)
            codes, valid = self.provider.sample(
                np.concatenate(lons), np.concatenate(lats), year
            )  # (N*S, 64), (N*S,)
            for i, r in enumerate(recs):
                sl = slice(i * s, (i + 1) * s)
                r.anchors = Anchors(
                    codes=np.ascontiguousarray(codes[sl], dtype=np.int8),
                    valid=np.asarray(valid[sl], dtype=bool),
                    positions=self.positions,
                    lonlat=np.column_stack([lons[i], lats[i]]),
                    year=year,
                    source=self.provider.description,
                    synthetic=self.provider.synthetic,
                )

    def close(self) -> None:
        self.provider.close()


def make_provider(cfg: Any, *, earthengine: Any = None, cache_dir: Any = None) -> EmbeddingProvider:
    """The provider named by an EmbeddingConfig. `earthengine` (the region's EarthEngineConfig) and
    `cache_dir` (the region's cache root) configure the `earthengine` type; without them it uses the
    defaults (project and credentials from the environment, the high-volume endpoint)."""
    if cfg.type == "cog":
        from triplet_builder.embeddings.cog import CogEmbeddingProvider

        return CogEmbeddingProvider(
            cfg.root,
            synthetic=cfg.synthetic,
            cache_dir=None if cache_dir is None else str(Path(cache_dir) / "cog"),
        )
    if cfg.type == "earthengine":
        from triplet_builder.config import EarthEngineConfig
        from triplet_builder.earthengine import ClientSettings
        from triplet_builder.embeddings.earthengine import EarthEngineEmbeddingProvider

        settings = ClientSettings.from_config(earthengine or EarthEngineConfig(), cache_dir)
        return EarthEngineEmbeddingProvider(settings, collection=cfg.collection)
    raise ValueError(f"embeddings.type {cfg.type!r} is not supported; use 'cog' or 'earthengine'")
