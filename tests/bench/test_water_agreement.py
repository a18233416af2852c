"""The water-agreement benchmark: its scores on a hand-computed case, and its labels file is usable."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize
from shapely.geometry import box

from bench.water_agreement import LABELS, TILES, scores


def test_scores_on_a_hand_computed_case() -> None:
    label = np.array([[1, 1, 1, 1], [2, 2, 0, 0]], dtype=np.uint8)  # 4 water, 2 land, 2 unlabelled
    pred = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], dtype=bool)  # TP 3, FN 1, FP 1; unlabelled not scored
    s = scores(pred, label)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 1, 1)
    assert (s["iou"], s["precision"], s["recall"]) == (0.6, 0.75, 0.75)


def test_labels_cover_both_classes_inside_their_tiles_without_overlap() -> None:
    labels = gpd.read_file(LABELS)
    assert set(labels["class"]) == {"water", "land"}
    for tile, group in labels.groupby("tile"):
        with rasterio.open(TILES / str(tile)) as ds:
            g = group.to_crs(ds.crs)
            assert set(g["class"]) == {"water", "land"}
            assert g.union_all().within(
                box(*ds.bounds).buffer(1.0)
            )  # 1 m: lon/lat round trip of edge vertices
            burn = [
                rasterize([geom], out_shape=ds.shape, transform=ds.transform, dtype="uint8")
                for geom in g.geometry
            ]
        assert (np.sum(burn, axis=0) <= 1).all()  # no pixel in two polygons
