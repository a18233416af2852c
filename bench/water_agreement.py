"""Benchmark: how the water mask agrees with hand-labelled water on the demo's real Sentinel-1 tiles.

Labels: bench/data/demo_water_labels.geojson (clear-water and clear-land polygons digitised by eye on the
two 2017 demo tiles; see bench/data/README.md: approximate, and only the pixels they cover are scored).
Each tile is judged as one chip by the facts' own rule (surface.water_mask: 3 x 3 median of the valid
pixels below the threshold) with three thresholds:

- `sigma0 table` (-18 dB): what the demo used while its region file declared sigma0;
- `derived table`: the table entry of the convention the scene source derives (gamma0: -17 dB);
- `otsu (scene)`: the bimodal split of the scene's own dB histogram (facts.water_threshold_db: otsu).

Scores over labelled pixels: IoU = TP / (TP + FP + FN), precision = TP / (TP + FP), recall = TP / (TP + FN),
water predicted inside a land polygon counting as FP.

    python -m bench.water_agreement
Writes bench/out/water_agreement.json and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.codec import to_db  # noqa: E402
from triplet_builder.config import SceneSourceConfig  # noqa: E402
from triplet_builder.facts.surface import water_mask  # noqa: E402
from triplet_builder.facts.thresholds import otsu_threshold, table_entry  # noqa: E402
from triplet_builder.sources.local import find_scenes  # noqa: E402

LABELS = ROOT / "bench" / "data" / "demo_water_labels.geojson"
TILES = ROOT / "data" / "demo" / "spatialist"
OUT = ROOT / "bench" / "out" / "water_agreement.json"


def scores(pred: np.ndarray, label: np.ndarray) -> dict[str, float | int]:
    """pred (H, W) bool water; label (H, W) uint8: 1 water, 2 land, 0 unlabelled (not scored)."""
    tp = int((pred & (label == 1)).sum())
    fp = int((pred & (label == 2)).sum())
    fn = int((~pred & (label == 1)).sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "iou": round(tp / (tp + fp + fn), 3) if tp + fp + fn else 0.0,
        "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
    }


def evaluate(tile: Path, labels: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    (scene,), _ = find_scenes(SceneSourceConfig(paths=[str(tile)]))
    with rasterio.open(tile) as ds:
        raw = ds.read(1, masked=True).filled(np.nan)[None]  # (1, H, W)
        mine = labels[labels["tile"] == tile.name].to_crs(ds.crs)
        label = rasterize(
            [(g, 1 if c == "water" else 2) for g, c in zip(mine.geometry, mine["class"], strict=True)],
            out_shape=ds.shape,
            transform=ds.transform,
            dtype="uint8",
        )
    db, valid = to_db(raw, scene.scale, scene.nodata)
    pols = scene.polarisations
    runs = {
        "sigma0 table": table_entry("sigma0", pols[0])[0],
        f"derived table ({scene.backscatter.value})": table_entry(scene.backscatter.value, pols[0])[0],
        "otsu (scene)": round(otsu_threshold(db[0][valid]), 2),
    }
    out = []
    for name, thr in runs.items():
        pred, _ = water_mask(db, valid, pols, thr)
        counts = {"water_px": int((label == 1).sum()), "land_px": int((label == 2).sum())}
        out.append({"tile": tile.name, "run": name, "threshold_db": thr, **counts, **scores(pred, label)})
    return out


def main() -> None:
    labels = gpd.read_file(LABELS)
    rows = [r for tile in sorted(set(labels["tile"])) for r in evaluate(TILES / tile, labels)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    print("| tile | run | threshold dB | IoU | precision | recall | water px labelled | land px labelled |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['tile'][:30]} | {r['run']} | {r['threshold_db']} | {r['iou']} | {r['precision']} | "
            f"{r['recall']} | {r['water_px']} | {r['land_px']} |"
        )


if __name__ == "__main__":
    main()
