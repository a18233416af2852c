"""The rows of a shard, checked and made into Arrow tables: the writer's error, the checks that name the
stage which left a field empty or a footprint that is not a 2-D Polygon, the aef_* list columns built per
batch from numpy arrays, tables with exactly the schema, and a row's estimated size (what closes a row
group before the hub's viewer would refuse it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from schemas import AEF_DIM
from triplet_builder.record import ChipRecord
from triplet_builder.writers.geoparquet import GEOMETRY_TYPES

AEF_COLUMNS = ("aef_codes", "aef_valid", "aef_positions", "aef_lonlat")


class ShardWriterError(RuntimeError):
    """A record cannot be written (a stage left a required field empty) or the writer is misused."""


def _check_polygon(wkb: bytes, what: str) -> None:
    """A named error unless the WKB parses as the Polygon the `geo` metadata declares."""
    try:
        geom = shapely.from_wkb(wkb)
    except shapely.errors.GEOSException as exc:
        raise ShardWriterError(
            f"{what}: footprint_wkb is not valid WKB ({exc}); check the georef stage"
        ) from exc
    if geom.geom_type not in GEOMETRY_TYPES or shapely.has_z(geom):
        raise ShardWriterError(
            f"{what}: footprint is a {geom.geom_type}, not a 2-D Polygon; check the georef stage"
        )


def _require(record: ChipRecord, name: str, value: Any, stage: str) -> Any:
    if value is None:
        raise ShardWriterError(
            f"chip {record.chip_id} (scene {record.scene.scene_id}): `{name}` is empty; the {stage} stage "
            "must fill it before the writer (or reject the chip)"
        )
    return value


def _aef_arrays(records: list[ChipRecord], schema: pa.Schema) -> dict[str, pa.Array]:
    """The aef_* list columns of a batch, built from concatenated numpy arrays (no per-value loops)."""
    counts = np.array([r.anchors.codes.shape[0] for r in records if r.anchors is not None], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    anchors = [r.anchors for r in records if r.anchors is not None]
    codes = np.concatenate([a.codes for a in anchors]).astype(np.int8, copy=False)  # (sum S, 64)
    valid = np.concatenate([a.valid for a in anchors]).astype(bool, copy=False)  # (sum S,)
    positions = np.concatenate([a.positions for a in anchors]).astype(np.float32, copy=False)  # (sum S, 2)
    lonlat = np.concatenate([a.lonlat for a in anchors]).astype(np.float64, copy=False)  # (sum S, 2)
    values = {
        "aef_codes": pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel()), AEF_DIM),
        "aef_valid": pa.array(valid),
        "aef_positions": pa.FixedSizeListArray.from_arrays(pa.array(positions.ravel()), 2),
        "aef_lonlat": pa.FixedSizeListArray.from_arrays(pa.array(lonlat.ravel()), 2),
    }
    return {
        name: pa.ListArray.from_arrays(offsets, values[name], type=schema.field(name).type)
        for name in AEF_COLUMNS
    }


def _table(
    rows: list[dict[str, Any]], schema: pa.Schema, extra: dict[str, pa.Array] | None = None
) -> pa.Table:
    """Rows -> a table with EXACTLY `schema` (never inferred); non-nullable columns are checked."""
    extra = extra or {}
    arrays = []
    for f in schema:
        arr = extra[f.name] if f.name in extra else pa.array([r[f.name] for r in rows], type=f.type)
        if not f.nullable and arr.null_count:
            raise ShardWriterError(
                f"column {f.name!r} is not nullable but {arr.null_count} row(s) have no value"
            )
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def _row_bytes(row: dict[str, Any], record: ChipRecord) -> int:
    """The row's uncompressed size, estimated from its large values (PNG, float32 dB, text, footprint,
    anchors: 64 int8 codes + 2 float32 + 2 float64 + 1 bool each) plus 1 KiB for the small columns."""
    texts = (row["facts"], row["caption"] or "", *(m["content"] for m in row["messages"]))
    anchors = record.anchors.codes.shape[0] if record.anchors is not None else 0
    return (
        len(row["image"]["bytes"])
        + len(row["backscatter_db"] or b"")
        + sum(len(t.encode()) for t in texts)
        + len(row["geometry"])
        + anchors * (64 + 8 + 16 + 1)
        + 1024
    )


def _window(record: ChipRecord) -> dict[str, int]:
    w = record.window
    return {"col_off": w.col_off, "row_off": w.row_off, "width": w.width, "height": w.height}
