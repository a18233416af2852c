"""Object labels from a vector file (GeoJSON, GeoPackage, shapefile: points or polygons) or a CSV of
points, matched to the scene they belong to and projected into the OUTPUT pixels of a chip as facts
"objects" items.

Columns (lat, lon, class, length in metres, time, scene id) come from the region file or are recognised
by their common names (triplet_builder.facts.label_columns). A label is used for a chip only if it
belongs to the chip's scene (triplet_builder.facts.scene_match: by scene / product id, by time within a
tolerance, or `none` for timeless labels such as fixed infrastructure) AND falls in the chip.

Classes: each label's class as the file writes it stays in `label`; `class` is its vocabulary class
(schemas.vocabulary.normalise_object_class: `plane` -> aircraft, xView3's vessels -> ship, its non-vessel
objects -> other, never ship). `classes_labelled` are the vocabulary classes the file labels exhaustively:
`facts.labels.classes`, else every class found in the whole file but `other` (the assumption that a file
labels all objects of each class it holds; a negative such as "no aircraft" is stated only for these).

Boxes: a polygon's box is its outline's. A point's box is a square of the object's length (it holds
an object of that length whatever its heading, which no recognised column gives); without a length it
is `point_box_m` (default 3 pixels) and the item says `box_from: nominal`, `length_m: null`.

Load a `LabelSet` once per task; it keeps the labels in EPSG:4326 with a spatial index, so each chip
only projects the labels that intersect its footprint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from schemas.vocabulary import normalise_object_class
from triplet_builder.facts.label_classes import UNLABELLABLE, check_classes
from triplet_builder.facts.label_columns import COMMON_NAMES, LabelColumns, resolve_columns
from triplet_builder.facts.label_file import json_safe, parse_numbers, parse_times, read_label_file, truthy
from triplet_builder.facts.scene_match import DEFAULT_TIME_TOLERANCE_S, id_matches, scene_names
from triplet_builder.facts.surface import cell_of
from triplet_builder.geo import scene_geo
from triplet_builder.record import SceneRef, Window

if TYPE_CHECKING:
    from triplet_builder.config import LabelsConfig

logger = logging.getLogger(__name__)

Match = Literal["auto", "scene_id", "time", "none"]
DEFAULT_POINT_BOX_PX = 3
_EPS = 1e-6  # pixel tolerance when rounding projected edges
_FOOTPRINT_PER_EDGE = 8  # as the georeference stage densifies chip footprints


def _resolve_match(where: str, match: Match, cols: LabelColumns) -> Literal["scene_id", "time", "none"]:
    if match == "scene_id" and cols.scene_id is None:
        raise ValueError(
            f"{where}: match: scene_id but no scene id column (looked for {list(COMMON_NAMES['scene_id'])}); "
            "set facts.labels.columns.scene_id"
        )
    if match == "time" and cols.time is None:
        raise ValueError(
            f"{where}: match: time but no time column (looked for {list(COMMON_NAMES['time'])}); "
            "set facts.labels.columns.time"
        )
    if match != "auto":
        return match
    if cols.scene_id is not None:
        return "scene_id"
    if cols.time is not None:
        return "time"
    raise ValueError(
        f"{where}: no scene id column (looked for {list(COMMON_NAMES['scene_id'])}) and no time column "
        f"(looked for {list(COMMON_NAMES['time'])}), so its labels cannot be matched to a scene; set "
        "facts.labels.columns.scene_id or .time, or match: none if the labels hold at every date "
        "(e.g. fixed infrastructure)"
    )


class LabelSet:
    """Labelled objects of one label file, in EPSG:4326, with a spatial index and their scene / time."""

    def __init__(
        self,
        gdf: gpd.GeoDataFrame,
        source: str,
        labels: list[str],
        lengths: list[float | None],
        attributes: list[dict[str, Any]],
        point_box_m: float | None = None,
        *,
        match: Literal["scene_id", "time", "none"] = "none",
        scene_ids: list[str] | None = None,
        times: np.ndarray | None = None,
        time_tolerance_s: float = DEFAULT_TIME_TOLERANCE_S,
        no_position: int = 0,
        classes_labelled: Sequence[str] | None = None,
    ) -> None:
        self.gdf = gdf.reset_index(drop=True)  # EPSG:4326
        self.source = source
        self.labels = labels
        self.lengths = lengths
        self.attributes = attributes
        self.point_box_m = point_box_m
        self.match = match
        self.scene_ids = scene_ids if scene_ids is not None else [""] * len(labels)
        self.times = times if times is not None else np.full(len(labels), np.datetime64("NaT"), "M8[ns]")
        self.time_tolerance_s = time_tolerance_s
        self.no_position = no_position  # rows of the file skipped for want of a position
        self.classes = [normalise_object_class(x) for x in labels]  # vocabulary class of each label
        found = sorted(set(self.classes) - {UNLABELLABLE})
        self.classes_from = "config" if classes_labelled is not None else "file"
        self.classes_labelled: tuple[str, ...] = tuple(
            sorted(set(classes_labelled)) if classes_labelled is not None else found
        )
        self.sindex = self.gdf.sindex  # built once here
        self._masks: dict[SceneRef, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.gdf)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        class_column: str | None = None,
        default_label: str = "object",
        point_box_m: float | None = None,
        *,
        columns: Mapping[str, str | None] | None = None,
        match: Match = "auto",
        time_tolerance_s: float = DEFAULT_TIME_TOLERANCE_S,
        classes: Sequence[str] | None = None,
    ) -> LabelSet:
        """Load and check a label file (columns present, values parse); raise ValueError in one line.

        class_column (same as columns["class"]) None: a column of a common class name, else xView3's
        is_vessel / is_fishing, else every object is default_label. point_box_m: box size of point
        labels without a length (default 3 pixels). match: see triplet_builder.facts.scene_match.
        classes: the vocabulary classes the file labels exhaustively (None: those found in it)."""
        p = Path(path)
        where = f"label file {p}"
        if not p.is_file():
            raise ValueError(f"{where} not found; fix facts.labels.path")
        if point_box_m is not None and not point_box_m > 0:
            raise ValueError(f"{where}: point_box_m must be > 0, got {point_box_m}")
        if time_tolerance_s < 0:
            raise ValueError(f"{where}: time_tolerance_s must be >= 0, got {time_tolerance_s}")
        bad = check_classes(classes)
        if bad:
            raise ValueError("; ".join(bad))
        mapping = dict(columns or {})
        if class_column is not None:
            mapping["class"] = class_column
        df, has_geometry = read_label_file(p)
        names = [str(c) for c in df.columns if not (has_geometry and c == df.geometry.name)]
        cols = resolve_columns(where, names, mapping, need_latlon=not has_geometry)
        how = _resolve_match(where, match, cols)
        if has_geometry:
            gdf = df
            keep = gdf.geometry.notna() & ~gdf.geometry.is_empty
        else:
            lat, lon = parse_numbers(where, df, cols.lat or ""), parse_numbers(where, df, cols.lon or "")
            gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
            keep = pd.Series(np.isfinite(lat.to_numpy()) & np.isfinite(lon.to_numpy()), index=gdf.index)
        no_position = int((~keep).sum())
        if no_position:
            logger.warning("%s: %d rows without a position skipped", where, no_position)
        gdf = gdf.loc[keep].reset_index(drop=True)
        lengths: list[float | None] = [None] * len(gdf)
        if cols.length_m is not None:
            num = parse_numbers(where, gdf, cols.length_m).to_numpy()
            lengths = [float(v) if math.isfinite(v) and v > 0 else None for v in num]
        scene_ids = (
            ["" if v is None else str(v) for v in map(json_safe, gdf[cols.scene_id])]
            if cols.scene_id is not None
            else None
        )
        label_times = parse_times(where, gdf, cols.time) if cols.time is not None else None
        records = gdf.to_dict("records")
        labels = [_label_of(r, cols, default_label) for r in records]
        attributes = [_attributes_of(r, cols) for r in records]
        if cols.klass is None and cols.xview3_flags[0] is None:
            logger.warning("%s: no class column found; every object is %r", where, default_label)
        logger.info("%s: %d objects, matched to scenes by %s", where, len(records), how)
        return cls(
            gdf,
            p.name,
            labels,
            lengths,
            attributes,
            point_box_m,
            match=how,
            scene_ids=scene_ids,
            times=label_times,
            time_tolerance_s=time_tolerance_s,
            no_position=no_position,
            classes_labelled=classes,
        )

    @classmethod
    def from_config(cls, cfg: LabelsConfig) -> LabelSet:
        """Load the label file of a region's `facts.labels`."""
        return cls.from_file(
            cfg.path,
            class_column=cfg.class_column,
            default_label=cfg.default_label,
            point_box_m=cfg.point_box_m,
            columns=cfg.columns.mapping(),
            match=cfg.match,
            time_tolerance_s=cfg.time_tolerance_s,
            classes=cfg.classes,
        )

    def matches(self, scene: SceneRef) -> np.ndarray:
        """(N,) bool: which labels belong to `scene` (cached per scene)."""
        if scene not in self._masks:
            if self.match == "none":
                mask = np.ones(len(self), dtype=bool)
            elif self.match == "time":
                t0 = pd.Timestamp(scene.acquired)
                t0 = t0.tz_convert("UTC").tz_localize(None) if t0.tzinfo is not None else t0
                delta = np.abs(self.times - np.datetime64(t0.to_datetime64(), "ns"))
                mask = delta <= np.timedelta64(round(self.time_tolerance_s * 1e9), "ns")
            else:
                names, keys = scene_names(scene)
                memo: dict[str, bool] = {}
                mask = np.array(
                    [memo.setdefault(s, id_matches(s, names, keys)) for s in self.scene_ids], dtype=bool
                )
            self._masks[scene] = mask
        return self._masks[scene]

    def covers(self, scene: SceneRef) -> bool:
        """Whether the file labels `scene` at all: timeless labels (`match: none`) cover every scene; else a
        row must match it (a scene no row names was never looked at by the labellers, so the file states
        no negative about it)."""
        return self.match == "none" or bool(self.matches(scene).any())

    def objects_in_chip(
        self,
        scene: SceneRef,
        window: Window,
        footprint: BaseGeometry,
        pixel_size_m: float | None = None,
        used: set[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Facts "objects" items for the labels of `scene` intersecting `footprint` (lon/lat), ordered
        by (y1, x1); the indices of the labels placed are added to `used`.

        pixel_size_m is the chip's (output) pixel size, used to size point boxes; by default it is
        derived from the scene and the window's resampling."""
        hits = self.sindex.query(footprint, predicate="intersects")
        mask = self.matches(scene)
        hits = [int(k) for k in hits if mask[int(k)]]
        if not hits:
            return []
        geo = scene_geo(scene)
        if pixel_size_m is None:
            pixel_size_m = geo.native_pixel_size_m() * window.width / window.out_width
        w, h = window.out_width, window.out_height
        out: list[dict[str, Any]] = []
        for i in sorted(hits):
            geom = self.gdf.geometry.iloc[i]
            length = self.lengths[i]
            if geom.geom_type == "Point":
                y, x = geo.lonlat_to_chip_pixel(window, np.array([geom.x]), np.array([geom.y]))
                size_m = length or self.point_box_m
                n = max(1, round(size_m / pixel_size_m)) if size_m else DEFAULT_POINT_BOX_PX  # side, px
                x1 = math.floor(float(x[0]) - n / 2.0 + 0.5)  # nearest pixel edge, half up
                y1 = math.floor(float(y[0]) - n / 2.0 + 0.5)
                x2, y2 = x1 + n, y1 + n
                box_from = "length" if length else "nominal"
            else:
                xy = np.asarray(_coords(geom))  # (K, 2) lon, lat
                y, x = geo.lonlat_to_chip_pixel(window, xy[:, 0], xy[:, 1])
                x1, x2 = math.floor(float(x.min()) + _EPS), math.ceil(float(x.max()) - _EPS)
                y1, y2 = math.floor(float(y.min()) + _EPS), math.ceil(float(y.max()) - _EPS)
                box_from = "outline"
            x1, x2 = max(x1, 0), min(x2, w)
            y1, y2 = max(y1, 0), min(y2, h)
            if x2 <= x1 or y2 <= y1:
                continue
            if used is not None:
                used.add(i)
            out.append(
                {
                    "label": self.labels[i],
                    "class": self.classes[i],
                    "bbox": [int(x1), int(y1), int(x2), int(y2)],
                    "cell": cell_of((x1 + x2) / 2.0, (y1 + y2) / 2.0, w, h),
                    "length_m": length,
                    "box_from": box_from,
                    "source": self.source,
                    "attributes": dict(self.attributes[i]),
                }
            )
        out.sort(key=lambda d: (d["bbox"][1], d["bbox"][0]))
        return out

    def account(self, scene_windows: Iterable[tuple[SceneRef, Iterable[Window]]]) -> dict[str, Any]:
        """Every row of the file counted once for a build: without a position (`no_position`), matched
        to no scene of it (`unmatched`, never used), matched and inside one of its scene's chip windows
        (`in_chips`), or matched but outside them all (`matched_outside_chips`)."""
        matched = np.zeros(len(self), dtype=bool)
        inside = np.zeros(len(self), dtype=bool)
        by_scene: dict[SceneRef, list[Window]] = {}
        for scene, windows in scene_windows:
            by_scene.setdefault(scene, []).extend(windows)
        for scene, windows in by_scene.items():
            mask = self.matches(scene)
            matched |= mask
            if not mask.any() or not windows:
                continue
            geo = scene_geo(scene)
            polys = []
            for win in windows:
                lon, lat = geo.window_outline(win, _FOOTPRINT_PER_EDGE)
                polys.append(Polygon(np.column_stack([lon, lat])))
            hits = self.sindex.query(shapely.union_all(polys), predicate="intersects")
            hit = np.zeros(len(self), dtype=bool)
            hit[np.asarray(hits, dtype=int)] = True
            inside |= hit & mask
        out: dict[str, Any] = {
            "file": self.source,
            "match": self.match,
            "total": len(self) + self.no_position,
            "no_position": self.no_position,
            "matched": int(matched.sum()),
            "unmatched": int((~matched).sum()),
            "in_chips": int(inside.sum()),
            "matched_outside_chips": int((matched & ~inside).sum()),
            "classes_labelled": list(self.classes_labelled),
            "classes_from": self.classes_from,
        }
        if self.match == "time":
            out["time_tolerance_s"] = self.time_tolerance_s
        if self.match == "none":
            out["note"] = (
                "match: none - the labels are declared timeless and used on every scene they overlap"
            )
        return out


def _label_of(rec: dict[str, Any], cols: LabelColumns, default: str) -> str:
    if cols.klass is not None:
        v = json_safe(rec.get(cols.klass))
        return str(v) if v not in (None, "") else default
    vessel_col, fishing_col = cols.xview3_flags
    if vessel_col is None:
        return default
    vessel = truthy(rec.get(vessel_col))
    fishing = truthy(rec.get(fishing_col)) if fishing_col else None
    if vessel is False:
        return "non-vessel object"
    if fishing:
        return "fishing vessel"
    return "vessel" if vessel else default


def _attributes_of(rec: dict[str, Any], cols: LabelColumns) -> dict[str, Any]:
    """The small whitelist copied into a fact: id, the class as the file writes it, confidence / score."""
    out: dict[str, Any] = {}
    if cols.klass is not None:
        out["source_class"] = json_safe(rec.get(cols.klass))
    for flag in cols.xview3_flags:
        if flag is not None:
            out[flag.lower()] = truthy(rec.get(flag))
    for name, col in cols.attributes.items():
        out[name] = json_safe(rec.get(col))
    return out


def _coords(geom: BaseGeometry) -> list[tuple[float, float]]:
    """All vertices of a geometry (polygon exteriors, lines, multi-parts)."""
    if isinstance(geom, Polygon):
        return [(float(x), float(y)) for x, y, *_ in geom.exterior.coords]
    if hasattr(geom, "geoms"):
        return [c for part in geom.geoms for c in _coords(part)]
    return [(float(x), float(y)) for x, y, *_ in geom.coords]
