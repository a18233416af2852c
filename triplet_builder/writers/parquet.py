"""The shard writer of one executor task: kept chips -> GeoParquet 1.1 triplet shards, rejects -> a table.

Layout under `out_dir`:

    data/{split}-{task_id:05d}-{part:03d}.parquet   triplet rows (schemas.triplet_schema()), one series per split
    rejects/rejects-{task_id:05d}.parquet           rejected chips with the reason (schemas.rejects_schema())

Rows are buffered and written as row groups of `row_group_rows` rows or fewer: a group also ends before
its rows pass `row_group_bytes` (estimated uncompressed: PNG, float32 dB, anchors, text), so chips of any
size stay readable by the hub's dataset viewer, which refuses row groups of over 300 MB (its scan limit),
and by `datasets`, which aims at 100 MB; 64 MiB leaves room for the estimate. A split's part rolls over at
`max_rows_per_shard` rows or about `max_bytes_per_shard` bytes. Every file is first written under a
hidden temporary name and only `os.replace`d to its final name when the writer is closed, so a crashed
task leaves nothing under a final name (and the `*-*.parquet` globs never see the temporaries).

GeoParquet needs the file's bounding box in the schema metadata, which is known only once the last row
is in; Arrow stores the schema at the start of a write, so each part is written twice: rows stream into
an uncompressed staging file, and closing the part rewrites it row group by row group, compressed and
with the `geo` metadata. Same records in the same order -> byte-identical files.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import AEF_DIM, CAPTION_FIELDS, SPLITS, rejects_schema, triplet_schema
from schemas.backscatter import encode_backscatter
from schemas.codec import Stretch
from triplet_builder.portable import portable_uri
from triplet_builder.record import ChipRecord
from triplet_builder.text.base import build_messages as text_messages
from triplet_builder.writers.geoparquet import _geo_metadata, _PartFile, file_sha256
from triplet_builder.writers.shard_rows import (
    ShardWriterError,
    _aef_arrays,
    _check_polygon,
    _require,
    _row_bytes,
    _table,
    _window,
)

# the names callers import from here; GeoParquet metadata and file helpers live in writers/geoparquet.py,
# row checks and tables in writers/shard_rows.py
__all__ = ["ShardWriter", "ShardWriterError", "_geo_metadata", "build_messages", "file_sha256"]

logger = logging.getLogger(__name__)

DEFAULT_COMPRESSION_LEVEL = 3
# `datasets` reads this key to restore features: the `image` struct {bytes, path} is an Image(). It only
# takes effect when the file's `image` field is nullable (datasets compares the whole field).
HF_METADATA = json.dumps(
    {"info": {"features": {"image": {"_type": "Image"}}}}, separators=(",", ":")
).encode()


def build_messages(record: ChipRecord) -> list[dict[str, str]]:
    """The row's `messages`: the caption and the QA as one chat (triplet_builder.text.base.build_messages)."""
    return text_messages(record.caption or "", record.qa)


@dataclass
class _Series:
    """The buffered rows and open part of one split (or of the rejects)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[ChipRecord] = field(default_factory=list)  # kept rows only: the anchors' arrays
    pending_bytes: int = 0
    part: _PartFile | None = None
    part_index: int = -1


# ---- the writer ------------------------------------------------------------------------------------


class ShardWriter:
    """Writes the kept and rejected chips of ONE executor task. Use as a context manager, or call close()."""

    def __init__(
        self,
        out_dir: Path,
        task_id: int,
        *,
        config_hash: str,
        pipeline_version: str,
        max_rows_per_shard: int = 2000,
        max_bytes_per_shard: int = 400_000_000,
        row_group_rows: int = 256,
        row_group_bytes: int = 64 * 2**20,
        compression: str = "zstd",
        compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
        stretch: Stretch | None = None,
        backscatter_column: bool = False,
        messages_fn: Callable[[ChipRecord], list[dict[str, str]]] = build_messages,
    ) -> None:
        if task_id < 0 or task_id > 99_999:
            raise ValueError(f"task_id must be in 0..99999 (5 digits in shard names), got {task_id}")
        if min(max_rows_per_shard, row_group_rows, max_bytes_per_shard, row_group_bytes) < 1:
            raise ValueError(
                "max_rows_per_shard, max_bytes_per_shard, row_group_rows and row_group_bytes must be positive, "
                f"got {max_rows_per_shard}, {max_bytes_per_shard}, {row_group_rows}, {row_group_bytes}"
            )
        self.out_dir = Path(out_dir)
        self.task_id = task_id
        self.config_hash = config_hash
        self.pipeline_version = pipeline_version
        self.max_rows_per_shard = max_rows_per_shard
        self.max_bytes_per_shard = max_bytes_per_shard
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self.compression = compression
        self.compression_level = (
            compression_level
            if compression.lower() != "none" and pa.Codec.supports_compression_level(compression)
            else None
        )
        self.stretch = stretch or Stretch()
        self.backscatter_column = backscatter_column  # also write the float32 dB chip (backscatter_db)
        self.messages_fn = messages_fn
        self.schema = triplet_schema()
        self.reject_schema = rejects_schema()
        self._series: dict[str, _Series] = {}
        self._rejects = _Series()
        self._finished: list[_PartFile] = []
        self._rows: dict[str, int] = {}
        self._n_rejects = 0
        self._closed = False

    # -- context manager: an exception inside the block discards everything ----------------------------
    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            if not self._closed:
                self.close()
        else:
            self.abort()

    # -- kept chips -----------------------------------------------------------------------------------
    def write(self, record: ChipRecord) -> None:
        """Append one kept chip (encodes its PNG now; rows go out a row group at a time)."""
        self._check_open()
        if record.rejected:
            raise ShardWriterError(
                f"chip {record.chip_id} is rejected ({record.reject_reason}); pass it to reject(), not write()"
            )
        split = _require(record, "split", record.split, "split")
        if split not in SPLITS:
            raise ShardWriterError(f"chip {record.chip_id}: split {split!r} is not one of {SPLITS}")
        row = self._row(record)
        _check_polygon(row["geometry"], f"chip {record.chip_id}")
        row_bytes = _row_bytes(row, record)

        series = self._series.setdefault(split, _Series())
        if series.part is not None:
            rows_in_part = series.part.rows + len(series.rows)
            bytes_in_part = series.part.staged_bytes + series.pending_bytes
            if (
                rows_in_part >= self.max_rows_per_shard
                or bytes_in_part + row_bytes > self.max_bytes_per_shard
            ):
                self._flush(series, self.schema)
                self._finish_part(series)
        if series.part is None:
            self._open_part(series, split)
        assert series.part is not None
        if series.rows and series.pending_bytes + row_bytes > self.row_group_bytes:
            self._flush(series, self.schema)  # the row group is full by bytes before it is by rows
        series.rows.append(row)
        series.records.append(record)
        series.pending_bytes += row_bytes
        self._rows[split] = self._rows.get(split, 0) + 1
        if len(series.rows) >= self.row_group_rows:
            self._flush(series, self.schema)

    # -- rejected chips -------------------------------------------------------------------------------
    def reject(self, record: ChipRecord) -> None:
        """Append one rejected chip to the task's rejects table."""
        self._check_open()
        if not record.rejected:
            raise ShardWriterError(f"chip {record.chip_id} is not rejected; pass it to write(), not reject()")
        geometry = record.georef.footprint_wkb if record.georef is not None else None
        row = {
            "chip_id": record.chip_id,
            "scene_id": record.scene.scene_id,
            "window": _window(record),
            "stage": record.reject_stage or "unknown",
            "reason": record.reject_reason,
            "detail": record.reject_detail or None,
            "geometry": geometry,
            "task_id": self.task_id,
        }
        series = self._rejects
        if series.part is None:
            final = self.out_dir / "rejects" / f"rejects-{self.task_id:05d}.parquet"
            series.part = self._new_part(final, self.reject_schema, data=False)
        if geometry is not None:
            _check_polygon(geometry, f"rejected chip {record.chip_id}")
        series.rows.append(row)
        self._n_rejects += 1
        if len(series.rows) >= self.row_group_rows:
            self._flush(series, self.reject_schema)

    # -- end of task ----------------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Finish every file, move them all to their final names, and say what was written."""
        self._check_open()
        try:
            for series in self._series.values():
                self._flush(series, self.schema)
                self._finish_part(series)
            self._flush(self._rejects, self.reject_schema)
            self._finish_part(self._rejects)
        except BaseException:
            self.abort()
            raise
        files = []
        checksums: dict[str, dict[str, Any]] = {}
        total = 0
        for part in self._finished:
            size = part.publish()
            total += size
            name = part.final.relative_to(self.out_dir).as_posix()
            files.append(name)
            checksums[name] = {"bytes": size, "sha256": file_sha256(part.final)}
        self._closed = True
        summary = {
            "task_id": self.task_id,
            "files": sorted(files),
            "checksums": dict(sorted(checksums.items())),  # the task marker's proof of its files (resume)
            "rows": {s: self._rows[s] for s in SPLITS if s in self._rows},
            "rejects": self._n_rejects,
            "bytes": total,
        }
        logger.info("task %d wrote %s", self.task_id, summary)
        return summary

    def abort(self) -> None:
        """Drop everything this writer has not published (temporaries included). Safe to call twice."""
        if self._closed:
            return
        parts = [s.part for s in (*self._series.values(), self._rejects) if s.part is not None]
        for part in [*parts, *self._finished]:
            part.discard()
        self._series.clear()
        self._rejects = _Series()
        self._finished.clear()
        self._closed = True
        logger.info("task %d: shard writer aborted; nothing was published", self.task_id)

    # -- internals ------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ShardWriterError(f"the shard writer of task {self.task_id} is already closed or aborted")

    def _new_part(self, final: Path, schema: pa.Schema, data: bool) -> _PartFile:
        """A triplet shard (`data`: bbox covering + `datasets` features) or the rejects table."""
        return _PartFile(
            final,
            schema,
            compression=self.compression,
            compression_level=self.compression_level,
            row_group_rows=self.row_group_rows,
            covering=data,
            extra_metadata={b"huggingface": HF_METADATA} if data else None,
        )

    def _open_part(self, series: _Series, split: str) -> None:
        series.part_index += 1
        if series.part_index > 999:
            raise ShardWriterError(
                f"task {self.task_id} split {split}: more than 1000 parts; raise the shard limits"
            )
        name = f"{split}-{self.task_id:05d}-{series.part_index:03d}.parquet"
        series.part = self._new_part(self.out_dir / "data" / name, self.schema, data=True)

    def _finish_part(self, series: _Series) -> None:
        if series.part is None:
            return
        series.part.finish()
        self._finished.append(series.part)
        series.part = None

    def _flush(self, series: _Series, schema: pa.Schema) -> None:
        if not series.rows:
            return
        assert series.part is not None
        extra = _aef_arrays(series.records, schema) if series.records else None
        series.part.write(_table(series.rows, schema, extra))
        series.rows = []
        series.records = []
        series.pending_bytes = 0

    def _row(self, record: ChipRecord) -> dict[str, Any]:
        """One kept chip -> a row of the triplet schema (the aef_* columns are built per batch)."""
        what = f"chip {record.chip_id}"
        scene = record.scene
        db = _require(record, "db", record.db, "tile")
        valid = _require(record, "valid", record.valid, "tile")
        georef = _require(record, "georef", record.georef, "georeference")
        anchors = _require(record, "anchors", record.anchors, "embed")
        facts = _require(record, "facts", record.facts, "facts")
        caption = _require(record, "caption", record.caption, "text")
        if db.ndim != 3 or valid.shape != db.shape[1:]:
            raise ShardWriterError(
                f"{what}: db must be (P, H, W) and valid (H, W), got {db.shape}, {valid.shape}"
            )
        codes = anchors.codes
        n_anchors = codes.shape[0]
        grid = math.isqrt(n_anchors)
        if codes.shape != (n_anchors, AEF_DIM) or codes.dtype != np.int8 or grid * grid != n_anchors:
            raise ShardWriterError(
                f"{what}: anchors.codes must be (G*G, {AEF_DIM}) int8, got {codes.shape} {codes.dtype}"
            )
        for name, arr, shape in (
            ("valid", anchors.valid, (n_anchors,)),
            ("positions", anchors.positions, (n_anchors, 2)),
            ("lonlat", anchors.lonlat, (n_anchors, 2)),
        ):
            if arr.shape != shape:
                raise ShardWriterError(f"{what}: anchors.{name} has shape {arr.shape}, expected {shape}")
        fields = record.caption_fields or {}
        unknown = sorted(set(fields) - set(CAPTION_FIELDS))
        if unknown:
            raise ShardWriterError(f"{what}: unknown caption fields {unknown}; allowed: {CAPTION_FIELDS}")
        if scene.acquired.tzinfo is None:
            raise ShardWriterError(
                f"{what}: scene {scene.scene_id} has a naive `acquired`; it must be UTC-aware"
            )

        png, channels, min_db, max_db = record.encoded(self.stretch)  # encoded once per chip
        xmin, ymin, xmax, ymax = georef.bbox
        return {
            "chip_id": record.chip_id,
            "split": record.split,
            "image": {"bytes": png, "path": f"{record.chip_id}.png"},
            "channels": channels,
            "stretch_min_db": min_db,
            "stretch_max_db": max_db,
            "backscatter_db": encode_backscatter(db) if self.backscatter_column else None,
            "width": int(db.shape[2]),
            "height": int(db.shape[1]),
            "pixel_size_m": float(georef.pixel_size_m),
            "valid_fraction": float(np.asarray(valid, dtype=bool).mean()),
            "scene_id": scene.scene_id,
            "source_uris": [portable_uri(u) for u in scene.uris],  # no folder of this machine
            "sensor": scene.sensor,
            "mode": scene.mode,
            "orbit_direction": scene.orbit_direction,
            "polarisations": list(scene.polarisations),
            "acquired": scene.acquired,
            "year": scene.year,
            "backscatter": scene.backscatter.value,
            "source_scale": scene.scale.value,
            "window": _window(record),
            "georef_kind": scene.georef.value,
            "native_crs": georef.native_crs,
            "native_transform": list(georef.transform) if georef.transform is not None else None,
            "centre_lon": float(georef.centre_lon),
            "centre_lat": float(georef.centre_lat),
            "grid_cell": georef.grid_cell,
            "utm_crs": georef.utm_crs,
            "geometry": georef.footprint_wkb,
            "bbox": {"xmin": float(xmin), "ymin": float(ymin), "xmax": float(xmax), "ymax": float(ymax)},
            "facts": json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
            "caption": caption,
            "caption_fields": {f: fields.get(f) for f in CAPTION_FIELDS},
            "qa": [{"task": q["task"], "question": q["question"], "answer": q["answer"]} for q in record.qa],
            "messages": self.messages_fn(record),
            "text_generator": _require(record, "text_generator", record.text_generator, "text"),
            "prompt_version": _require(record, "prompt_version", record.prompt_version, "text"),
            "aef_grid": grid,
            "aef_year": anchors.year,
            "aef_source": anchors.source,
            "aef_synthetic": bool(anchors.synthetic),
            "pipeline_version": self.pipeline_version,
            "config_hash": self.config_hash,
        }
