"""Facts stage: the fact sheet of each chip (place, acquisition, surface fractions, CFAR detections), the
only source of truth for the text. Chips are batched so the offline geocoder answers many chips in one
query. It writes `objects: []`, so its sheet is complete and valid; the labels stage (stages/labels.py),
right after it when a label file is configured, fills `objects` and adds `labels`.

CFAR runs on the chip's context (the tile stage's `margin`, see facts/cfar.py) so that overlapping chips
agree on their targets; every other fact (surface fractions, statistics) uses the chip's pixels only."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from triplet_builder.config import FactsConfig
from triplet_builder.facts.cfar import CfarParams, detect, detector_info
from triplet_builder.facts.places import nearest_places
from triplet_builder.facts.sheet import CORE_SECTIONS, build_fact_sheet
from triplet_builder.facts.surface import reference_band, surface_facts, water_mask
from triplet_builder.facts.thresholds import Thresholds, otsu_threshold, resolve
from triplet_builder.record import ChipRecord, SceneRef
from triplet_builder.sources.sample import scene_db_sample
from triplet_builder.stages.base import BatchStage, StageStats

logger = logging.getLogger(__name__)


class Facts(BatchStage):
    name = "facts"
    provides = CORE_SECTIONS

    def __init__(self, cfg: FactsConfig, *, batch: int = 64) -> None:
        self.cfg = cfg
        self.batch = batch
        c = cfg.cfar
        self.cfar = CfarParams(
            pfa=c.pfa,
            guard=c.guard,
            train=c.train,
            min_db=c.min_db,
            min_area_px=c.min_area_px,
            max_area_px=c.max_area_px,
            max_extent_px=c.max_extent_px,
        )
        self._scene_thresholds: dict[str, Thresholds] = {}

    def process_batch(self, records: list[ChipRecord], st: StageStats) -> None:
        places = nearest_places(
            [r.georef.centre_lon for r in records],  # type: ignore[union-attr]
            [r.georef.centre_lat for r in records],  # type: ignore[union-attr]
            max_km=self.cfg.max_place_km,
        )
        for r, place in zip(records, places, strict=True):
            self._facts(r, place)

    def thresholds(self, scene: SceneRef) -> Thresholds:
        """The scene's water / bright thresholds (config, table by convention and polarisation, or the
        scene's Otsu split), computed once per scene so that all its chips agree."""
        t = self._scene_thresholds.get(scene.scene_id)
        if t is None:
            pols = scene.polarisations
            otsu = None
            if self.cfg.water_threshold_db == "otsu":
                try:
                    db, valid = scene_db_sample(scene)
                except ValueError as e:  # a virtual scene: no file to sample; the table, said so
                    logger.warning("%s; water threshold from the table instead of Otsu", e)
                else:
                    if valid.any():
                        otsu = {b: otsu_threshold(db[b][valid]) for b in range(db.shape[0])}
            t = resolve(
                scene.backscatter.value,
                pols,
                reference_band(pols),
                self.cfg.water_threshold_db
                if otsu is not None or self.cfg.water_threshold_db != "otsu"
                else None,
                self.cfg.bright_threshold_db,
                otsu,
            )
            if self.cfg.water_threshold_db == "otsu" and otsu is None:
                t = dataclasses.replace(t, water_source=f"{t.water_source} (otsu: no scene sample)")
            self._scene_thresholds[scene.scene_id] = t
        return t

    def _facts(self, r: ChipRecord, place: dict[str, Any] | None) -> None:
        assert r.db is not None and r.valid is not None and r.georef is not None
        pols = r.scene.polarisations
        t = self.thresholds(r.scene)
        water = water_mask(r.db, r.valid, pols, t.water_db, t.water_cross_db)
        surface = surface_facts(
            r.db,
            r.valid,
            pols,
            water_threshold_db=t.water_db,
            bright_threshold_db=t.bright_db,
            water=water,
        )
        surface["water_threshold_cross_db"] = t.water_cross_db
        surface["water_threshold_source"] = t.water_source
        surface["bright_threshold_source"] = t.bright_source
        band = reference_band(pols)
        if r.context_db is not None and r.context_valid is not None:
            cdb, cvalid, margin = r.context_db[band], r.context_valid, r.margin
        else:
            cdb, cvalid, margin = r.db[band], r.valid, 0
        detections = detect(cdb, cvalid, water[0], r.georef.pixel_size_m, self.cfar, margin=margin)
        r.context_db = r.context_valid = None  # the context has served
        r.facts = build_fact_sheet(
            scene=r.scene,
            window=r.window,
            georef=r.georef,
            db=r.db,
            valid=r.valid,
            place=place,
            surface=surface,
            detections=detections,
            detector=detector_info(self.cfar),
            objects=[],  # the labels stage's (stages/labels.py)
        )
