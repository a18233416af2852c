"""Georeference stage: per chip its densified lon/lat footprint, bbox, centre, native CRS and chip affine,
pixel size in metres, ground width and height in metres (geodesic, per axis), Major TOM grid cell, UTM
zone, and its spatially blocked split.

A chip gets split S only if every split block (Major-TOM-style cell of `block_km`) its footprint shares
area with hashes to S; a chip straddling blocks of different splits is rejected (`split_guard`). Two
chips of different splits then cover disjoint sets of blocks and cannot share a pixel, whatever scene
(or overlapping scenes) they come from.
"""

from __future__ import annotations

import hashlib

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from triplet_builder.footprint import crosses_antimeridian, lonlat_bbox, lonlat_polygon, parts
from triplet_builder.geo import scene_geo, utm_crs_for
from triplet_builder.grid import cells_touched, grid_cell
from triplet_builder.record import ChipRecord, Georef
from triplet_builder.stages.base import Stage


def split_of_block(block: str, *, block_km: float, validation: float, test: float, salt: str) -> str:
    """Deterministic split of a spatial block (the name of a Major-TOM-style cell of block_km)."""
    u = int.from_bytes(hashlib.sha256(f"{salt}|{block_km}|{block}".encode()).digest()[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + validation:
        return "validation"
    return "train"


def split_for(lon: float, lat: float, *, block_km: float, validation: float, test: float, salt: str) -> str:
    """Deterministic split of the spatial block holding the point."""
    block = grid_cell(lon, lat, block_km)
    return split_of_block(block, block_km=block_km, validation=validation, test=test, salt=salt)


def splits_of_footprint(
    footprint: BaseGeometry, *, block_km: float, validation: float, test: float, salt: str
) -> dict[str, str]:
    """{block: split} for every block the footprint shares area with (a shared border line is not area)."""
    return {
        b: split_of_block(b, block_km=block_km, validation=validation, test=test, salt=salt)
        for part in parts(footprint)  # each side of the antimeridian on its own
        for b in cells_touched(part, block_km)
    }


class Georeference(Stage):
    name = "georeference"

    def __init__(
        self,
        *,
        per_edge: int = 8,
        block_km: float = 5.0,
        validation: float = 0.1,
        test: float = 0.1,
        salt: str = "",
    ) -> None:
        self.per_edge = per_edge
        self.split_args = {"block_km": block_km, "validation": validation, "test": test, "salt": salt}
        self._placed: set[str] = set()  # chip ids `locate` placed ahead of `process` (the tile stage's guard)

    def process(self, record: ChipRecord) -> ChipRecord:
        if record.chip_id in self._placed:  # placed by this stage's own `locate` before the read: done once
            self._placed.discard(record.chip_id)
            return record
        why = self.locate(record)
        self._placed.discard(record.chip_id)
        return record.reject(self.name, *why) if why is not None else record

    def locate(self, record: ChipRecord) -> tuple[str, str] | None:
        """Place the chip from its window alone (no pixels): set `record.georef` and `record.split`; or
        return the (reason, detail) that rejects it, `record.georef` set where its footprint is known.
        The tile stage asks this before it reads a window (pipelines/stages.py), so a chip this stage would
        reject costs no read; the same answer, every time, for the same window. A chip placed so is not
        placed again by `process`."""
        geo = scene_geo(record.scene)
        w = record.window
        lon, lat = geo.window_outline(w, self.per_edge)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            return "bad_footprint", "footprint has non-finite lon/lat (georeferencing out of range)"
        poly = lonlat_polygon(lon, lat)  # split at the antimeridian where the ring crosses it
        if isinstance(poly, Polygon) and not poly.is_valid:
            # a self-touching ring from a wild GCP fit: its hull is the honest footprint
            poly = shapely.make_valid(poly).convex_hull
        if isinstance(poly, MultiPolygon) and crosses_antimeridian(lon):
            # the split footprint and its RFC 7946 bbox are right (triplet_builder/footprint.py), but the
            # shards declare Polygon footprints only: refuse the chip by name rather than store a polygon
            # spanning the globe
            w_, s_, e_, n_ = lonlat_bbox(poly)
            return (
                "antimeridian",
                f"footprint crosses 180 degrees (bbox west {w_:.4f} > east {e_:.4f}, lat {s_:.4f}..{n_:.4f}): "
                "split the scene at the antimeridian before the build",
            )
        if not isinstance(poly, Polygon) or poly.is_empty:
            return "bad_footprint", f"footprint is a {poly.geom_type}, not a polygon"
        clon, clat = geo.pixel_to_lonlat(
            np.array([w.row_off + w.height / 2.0]), np.array([w.col_off + w.width / 2.0])
        )
        c_lon, c_lat = float(clon[0]), float(clat[0])
        width_m, height_m = geo.window_ground_size_m(w)
        record.georef = Georef(
            footprint_wkb=shapely.to_wkb(poly, output_dimension=2),
            bbox=tuple(float(v) for v in poly.bounds),  # type: ignore[arg-type]
            centre_lon=c_lon,
            centre_lat=c_lat,
            native_crs=geo.crs.to_string() if geo.crs is not None else None,
            transform=geo.affine_of_window(w),
            pixel_size_m=float(record.scene.pixel_size_m * w.width / w.out_width),
            grid_cell=grid_cell(c_lon, c_lat),
            utm_crs=utm_crs_for(c_lon, c_lat),
            width_m=width_m,
            height_m=height_m,
        )
        blocks = splits_of_footprint(poly, **self.split_args)  # type: ignore[arg-type]
        splits = sorted(set(blocks.values()))
        if len(splits) != 1:
            return (
                "split_guard",
                "footprint straddles blocks of different splits: "
                + ", ".join(f"{b} {s}" for b, s in sorted(blocks.items())),
            )
        record.split = splits[0]
        self._placed.add(record.chip_id)
        return None

    def close(self) -> None:
        self._placed.clear()
