"""What the preview shows, read from a build folder ONLY through its manifest.json, metadata.parquet (the
image-free index: selection, filters and the map) and the shards (only the rows and columns of the chips
shown, by row group).

Nothing here renders HTML: the records are plain data, so the selection, the boxes and the anchors are
testable without a browser.
"""

from __future__ import annotations

import base64
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from PIL import Image

from pipelines.preview.anchors import false_colour
from schemas.codec import to_rgb
from schemas.frames import box_from_frame, qa_frame, stated_frame

SHARD_COLUMNS = [
    "chip_id",
    "image",
    "width",
    "height",
    "channels",
    "caption",
    "qa",
    "facts",
    "aef_codes",
    "aef_valid",
    "aef_grid",
    "aef_synthetic",
]
META_COLUMNS = [
    "chip_id",
    "split",
    "scene_id",
    "acquired",
    "grid_cell",
    "centre_lon",
    "centre_lat",
    "geometry",
    "valid_fraction",
    "n_detections",
    "n_objects",
    "file",
    "row",
]


MAX_FOOTPRINTS = 5000  # footprints drawn on the map at most (beyond: the shown chips and an even sample)


class PreviewError(ValueError):
    """A build folder the preview cannot read; the message is one line naming the file and what to do."""


@dataclass(frozen=True, slots=True)
class Box:
    """A box to draw, normalized [x1, y1, x2, y2] of the chip (schemas/frames.py), and where it comes from:
    `facts` (the fact sheet's detections / objects) or `qa` (a detection answer, read in its stated frame)."""

    box: tuple[float, float, float, float]
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class Footprint:
    """One kept chip on the map (every kept chip, shown or not): its outline ring in lon/lat."""

    chip_id: str
    split: str
    scene_id: str
    has_targets: bool
    ring: list[tuple[float, float]]
    shown: bool


@dataclass(slots=True)
class Card:
    """One chip card of the grid."""

    chip_id: str
    split: str
    scene_id: str
    acquired: str
    grid_cell: str
    centre: tuple[float, float]  # (lon, lat)
    valid_fraction: float
    n_detections: int
    n_objects: int
    width: int = 0
    height: int = 0
    channels: list[str] = field(default_factory=list)
    image_uri: str = ""
    anchors_uri: str | None = None
    anchors_grid: int = 0
    anchors_valid: int = 0
    aef_synthetic: bool = False
    caption: str = ""
    qa: list[dict[str, str]] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_targets(self) -> bool:
        return self.n_detections + self.n_objects > 0


@dataclass(slots=True)
class Preview:
    """Everything the page shows."""

    manifest: dict[str, Any]
    cards: list[Card]
    footprints: list[Footprint]
    kept: int
    pca: dict[str, Any]
    scene_hulls: dict[str, list[tuple[float, float]]]  # scene id -> outline ring (lon, lat)


def png_data_uri(pixels: np.ndarray | Image.Image) -> str:
    """An image as a `data:image/png;base64,...` URI (the page needs no file beside it)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def load_manifest(out: Path) -> dict[str, Any]:
    path = out / "manifest.json"
    if not path.is_file():
        raise PreviewError(f"{path}: not found; pass a finished build folder (the one with manifest.json)")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PreviewError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rebuild the folder"
        ) from None
    return manifest


def load_metadata(out: Path, manifest: dict[str, Any]) -> pa.Table:
    name = (manifest.get("metadata") or {}).get("file", "metadata.parquet")
    path = out / name
    if not path.is_file():
        raise PreviewError(
            f"{path}: not found; this folder was built before the image-free index existed: rebuild it"
        )
    schema = pq.read_schema(path)
    missing = [c for c in META_COLUMNS if c not in schema.names]
    if missing:
        raise PreviewError(f"{path}: columns {missing} missing; rebuild the folder with this version")
    return pq.read_table(path, columns=META_COLUMNS)


def select(rows: list[dict[str, Any]], max_chips: int) -> list[dict[str, Any]]:
    """At most `max_chips` rows, taken round-robin over the (split, scene, has targets) groups in index
    order, so a small preview still shows every split, every scene and chips with and without targets."""
    groups: dict[tuple[str, str, bool], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["split"], r["scene_id"], r["n_detections"] + r["n_objects"] > 0)].append(r)
    queues = [groups[k] for k in sorted(groups)]
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < max_chips and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(picked) < max_chips:
                picked.append(q[depth])
        depth += 1
    order = {r["chip_id"]: i for i, r in enumerate(rows)}
    return sorted(picked, key=lambda r: order[r["chip_id"]])


def _read_rows(out: Path, file: str, rows: list[int]) -> dict[int, dict[str, Any]]:
    """The SHARD_COLUMNS of the given rows of one shard, reading only the row groups that hold them."""
    path = out / file
    if not path.is_file():
        raise PreviewError(f"{path}: listed in metadata.parquet but missing; run `triplet-builder verify`")
    pf = pq.ParquetFile(path)
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    wanted: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        g = int(np.searchsorted(starts, r, side="right") - 1)
        if not 0 <= g < pf.num_row_groups:
            raise PreviewError(f"{path}: has no row {r}; metadata.parquet is stale: rebuild the folder")
        wanted[g].append(r)
    found: dict[int, dict[str, Any]] = {}
    for g, rs in wanted.items():
        table = pf.read_row_group(g, columns=SHARD_COLUMNS)
        for r in rs:
            found[r] = table.slice(r - int(starts[g]), 1).to_pylist()[0]
    return found


def _fact_boxes(facts: dict[str, Any]) -> list[Box]:
    out = [
        Box(tuple(d["bbox_norm"]), "bright point target", "facts")  # type: ignore[arg-type]
        for d in (facts.get("detections") or {}).get("items") or []
    ]
    for o in facts.get("objects") or []:
        out.append(Box(tuple(o["bbox_norm"]), str(o.get("class") or o.get("label") or "object"), "facts"))
    return out


def _qa_boxes(qa: list[dict[str, str]], width: int, height: int) -> tuple[list[Box], list[str]]:
    """The boxes the detection answers state, normalized from the frame their question names (else the
    chip's own pixels, the QA frame); an answer that is not the builder's JSON is reported, not drawn."""
    boxes: list[Box] = []
    notes: list[str] = []
    for item in qa:
        if item["task"] != "detection" or item["answer"].strip() == "None":
            continue
        frame = stated_frame(item["question"]) or qa_frame(width, height)
        try:
            parsed = json.loads(item["answer"])
            for it in parsed:
                x = box_from_frame(it["bbox_2d"], frame)
                boxes.append(Box((x[0], x[1], x[2], x[3]), str(it.get("label", "")), "qa"))
        except (json.JSONDecodeError, TypeError, KeyError, ValueError):
            notes.append(f"a detection answer is not a JSON list of bbox_2d: {item['answer'][:60]}")
    return boxes, notes


def _fill(card: Card, row: dict[str, Any], colours: np.ndarray | None) -> None:
    with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
        card.image_uri = png_data_uri(to_rgb(im))
    card.width, card.height, card.channels = int(row["width"]), int(row["height"]), list(row["channels"])
    card.caption, card.qa = row["caption"], list(row["qa"])
    card.aef_synthetic = bool(row["aef_synthetic"])
    card.anchors_grid = int(row["aef_grid"])
    card.anchors_valid = int(sum(bool(v) for v in row["aef_valid"]))
    if colours is not None and card.anchors_valid:
        card.anchors_uri = png_data_uri(colours)
    qa_boxes, notes = _qa_boxes(card.qa, card.width, card.height)
    card.boxes = _fact_boxes(json.loads(row["facts"])) + qa_boxes
    card.notes = notes


def collect(output_dir: str | Path, max_chips: int) -> Preview:
    """Read what the page shows from the build folder `output_dir`."""
    if max_chips < 1:
        raise PreviewError(f"--max-chips {max_chips}: must be at least 1")
    out = Path(output_dir)
    manifest = load_manifest(out)
    rows = load_metadata(out, manifest).to_pylist()
    chosen = select(rows, max_chips)
    by_file: dict[str, list[int]] = defaultdict(list)
    for r in chosen:
        by_file[r["file"]].append(int(r["row"]))
    shard_rows = {(f, i): v for f, rs in by_file.items() for i, v in _read_rows(out, f, rs).items()}
    records = [shard_rows[(r["file"], int(r["row"]))] for r in chosen]
    for r, rec in zip(chosen, records, strict=True):
        if rec["chip_id"] != r["chip_id"]:
            raise PreviewError(
                f"{out / r['file']}: row {r['row']} is chip {rec['chip_id']}, metadata.parquet says "
                f"{r['chip_id']}; the index is stale: rebuild the folder"
            )
    colours, pca = false_colour(
        [np.asarray(rec["aef_codes"], dtype=np.int8).reshape(-1, 64) for rec in records],
        [np.asarray(rec["aef_valid"], dtype=bool) for rec in records],
        [int(rec["aef_grid"]) for rec in records],
    )
    cards = []
    for r, rec, col in zip(chosen, records, colours, strict=True):
        card = Card(
            chip_id=r["chip_id"],
            split=r["split"],
            scene_id=r["scene_id"],
            acquired=r["acquired"].strftime("%Y-%m-%d %H:%M UTC"),
            grid_cell=r["grid_cell"],
            centre=(float(r["centre_lon"]), float(r["centre_lat"])),
            valid_fraction=float(r["valid_fraction"]),
            n_detections=int(r["n_detections"]),
            n_objects=int(r["n_objects"]),
        )
        _fill(card, rec, col)
        cards.append(card)
    shown = {c.chip_id for c in cards}
    # ~1 m in degrees: the densified edges collapse to a few vertices, invisibly at any map scale
    geoms = shapely.simplify(shapely.from_wkb([r["geometry"] for r in rows]), 1e-5)
    # every kept chip up to MAX_FOOTPRINTS (the page stays light), then the shown ones and an even sample
    every = max(1, -(-len(rows) // MAX_FOOTPRINTS))
    footprints = [
        Footprint(
            chip_id=r["chip_id"],
            split=r["split"],
            scene_id=r["scene_id"],
            has_targets=r["n_detections"] + r["n_objects"] > 0,
            ring=[(float(x), float(y)) for x, y in shapely.get_exterior_ring(g).coords],
            shown=r["chip_id"] in shown,
        )
        for i, (r, g) in enumerate(zip(rows, geoms, strict=True))
        if i % every == 0 or r["chip_id"] in shown
    ]
    return Preview(
        manifest=manifest,
        cards=cards,
        footprints=footprints,
        kept=len(rows),
        pca=pca,
        scene_hulls=_scene_hulls(rows, geoms),
    )


def _scene_hulls(rows: list[dict[str, Any]], geoms: np.ndarray) -> dict[str, list[tuple[float, float]]]:
    """Per scene, the outline of the convex hull of ALL its kept chips' footprints (the hull of their
    vertices: the same as the hull of their union, without the union)."""
    by_scene: dict[str, list[np.ndarray]] = defaultdict(list)
    for r, g in zip(rows, geoms, strict=True):
        by_scene[r["scene_id"]].append(shapely.get_coordinates(g))
    hulls = {}
    for sid, coords in by_scene.items():
        hull = shapely.convex_hull(shapely.multipoints(np.concatenate(coords)))
        if hull.geom_type == "Polygon":
            hulls[sid] = [(float(x), float(y)) for x, y in hull.exterior.coords]
    return hulls


__all__ = ["Box", "Card", "Footprint", "Preview", "PreviewError", "collect", "png_data_uri", "select"]
