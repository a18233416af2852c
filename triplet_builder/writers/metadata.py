"""metadata.parquet: the image-free index of a built dataset (schemas.triplet.metadata_schema), one row per
kept chip with its shard file and row, written after the shards from their small columns (never the
images), atomically, with GeoParquet metadata so geopandas reads the footprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import metadata_schema
from triplet_builder.writers.geoparquet import _geo_metadata

METADATA_FILE = "metadata.parquet"
_FROM_SHARD: tuple[str, ...] = (
    "chip_id",
    "split",
    "grid_cell",
    "centre_lon",
    "centre_lat",
    "geometry",
    "bbox",
)
_FROM_SHARD += ("acquired", "scene_id", "polarisations", "valid_fraction", "facts")


def _counts(facts_json: str) -> tuple[int, int]:
    facts = json.loads(facts_json)
    return len(facts.get("detections", {}).get("items", [])), len(facts.get("objects", []))


def write_metadata(out: Path, files: list[str]) -> dict[str, Any]:
    """Write out/metadata.parquet for the shards `files` (relative to out, in order); returns its rows and
    bytes."""
    schema = metadata_schema()
    schema = schema.with_metadata({**(schema.metadata or {}), b"geo": _geo_metadata(("Polygon",), True)})
    tables = []
    for f in files:
        t = pq.read_table(out / f, columns=list(_FROM_SHARD))
        dets, objs = (
            zip(*(_counts(x) for x in t.column("facts").to_pylist()), strict=True) if t.num_rows else ((), ())
        )
        t = t.drop_columns(["facts"])
        t = t.append_column("n_detections", pa.array(dets, pa.int32()))
        t = t.append_column("n_objects", pa.array(objs, pa.int32()))
        t = t.append_column("file", pa.array([f] * t.num_rows, pa.string()))
        t = t.append_column("row", pa.array(range(t.num_rows), pa.int64()))
        tables.append(t.select(schema.names).cast(schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    tmp = out / f".{METADATA_FILE}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out / METADATA_FILE)
    return {"file": METADATA_FILE, "rows": table.num_rows, "bytes": (out / METADATA_FILE).stat().st_size}
