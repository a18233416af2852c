"""One GeoParquet file of a shard: the `geo` metadata of its footprint column (WKB Polygons in OGC:CRS84,
with or without the `bbox` covering), writing it compressed under a hidden temporary name that is only
`os.replace`d to its final name on publish, and the SHA-256 the task marker records of it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyproj import CRS

GEOPARQUET_VERSION = "1.1.0"


def crs84_projjson() -> dict[str, Any]:
    """PROJJSON of OGC:CRS84 (lon/lat on WGS84), the `crs` of every geometry column we write."""
    return CRS("OGC:CRS84").to_json_dict()  # type: ignore[no-any-return]


GEOMETRY_TYPES = ("Polygon",)


def _geo_metadata(geometry_types: tuple[str, ...], covering: bool) -> bytes:
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": list(geometry_types),
        "crs": crs84_projjson(),
    }
    if covering:
        column["covering"] = {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"],
            }
        }
    geo = {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}
    return json.dumps(geo, sort_keys=True, separators=(",", ":")).encode()


class _PartFile:
    """One Parquet file, written compressed to a hidden temporary name and renamed on `publish`.

    The `geo` metadata is fixed when the file is opened (pyarrow serialises the Arrow schema, metadata
    included, at open), so it carries no file-level `bbox` (optional in GeoParquet 1.1): readers filter
    on the `bbox` covering column, whose row-group statistics Parquet keeps. Every footprint must be a
    Polygon, the one geometry type the metadata declares.
    """

    def __init__(
        self,
        final: Path,
        schema: pa.Schema,
        *,
        compression: str,
        compression_level: int | None,
        row_group_rows: int,
        covering: bool,
        extra_metadata: dict[bytes, bytes] | None = None,
    ) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp")
        self.row_group_rows = row_group_rows
        self.rows = 0
        metadata = {**(schema.metadata or {}), **(extra_metadata or {})}
        metadata[b"geo"] = _geo_metadata(GEOMETRY_TYPES, covering)
        self.schema = schema.with_metadata(metadata)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sink = pa.OSFile(str(self.tmp), "wb")
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._sink, self.schema, compression=compression, compression_level=compression_level
        )

    @property
    def staged_bytes(self) -> int:
        return int(self._sink.tell())

    def write(self, table: pa.Table) -> None:
        assert self._writer is not None, "write after finish"
        self._writer.write_table(
            table.replace_schema_metadata(self.schema.metadata), row_group_size=self.row_group_rows
        )
        self.rows += table.num_rows

    def finish(self) -> None:
        """Write the footer and close the temporary file."""
        if self._writer is None:
            return
        self._writer.close()
        self._sink.close()
        self._writer = None

    def publish(self) -> int:
        """Move the finished file to its final name; returns its size in bytes."""
        os.replace(self.tmp, self.final)
        return self.final.stat().st_size

    def discard(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._sink.close()
                self._writer = None
        self.tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (a shard can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
