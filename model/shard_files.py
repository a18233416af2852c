"""The triplet shard FILES as the trainer's reader sees them: finding them, reading their columns into arrays
and identifying them by content.

`_resolve_files` turns a dataset folder (its data/ subfolder), a folder of shards, a glob or a list into the
sorted, de-duplicated shard paths; `_arrow_rows_2d` / `_arrow_rows_1d` turn a list column of a row group into
one NumPy array per row without a Python loop per value; `fingerprint` is what a checkpoint stores to say
which data trained it (every file's size, footer SHA-256 and rows, one digest over all of it). Split from the
shard reader (model/data.py), which uses these and re-exports `_resolve_files`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import SCHEMA_VERSION


def _resolve_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files from a dataset folder (its data/ subfolder), a folder of shards, a glob or a list.

    A dataset folder also holds rejects/ (another schema): pointing at the folder reads data/ only."""
    items = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            folder = p / "data" if (p / "data").is_dir() else p
            found = sorted(f for f in folder.rglob("*.parquet") if not f.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"no *.parquet shards under {folder}; build the dataset first")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            found = sorted(Path(g) for g in _glob(str(item)))
            if not found:
                raise FileNotFoundError(f"shard source {item} matches no file; pass a folder, file or glob")
            files += found
    return sorted(dict.fromkeys(f.resolve() for f in files))


def _glob(pattern: str) -> list[str]:
    import glob

    return [f for f in glob.glob(pattern, recursive=True) if f.endswith(".parquet")]


def _arrow_rows_2d(arr: pa.ChunkedArray | pa.Array, dtype: np.dtype[Any], width: int) -> list[np.ndarray]:
    """A list<fixed_size_list<T>[width]> column -> one (S, width) array per row, without Python loops per value."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    flat = np.asarray(arr.flatten().flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(-1, width)
    return np.split(flat, np.cumsum(lengths)[:-1])


def _arrow_rows_1d(arr: pa.ChunkedArray | pa.Array, dtype: np.dtype[Any]) -> list[np.ndarray]:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=dtype)
    return np.split(flat, np.cumsum(lengths)[:-1])


def split_row_groups(
    files: Sequence[Path], split: str, *, required: Sequence[str]
) -> list[tuple[int, int, int]]:
    """(file index, row group, rows) of every row group that may hold `split`, from the footers only: a file
    that lacks a `required` column is not a triplet shard; a row group whose statistics of the `split` column
    prove the split absent is never read."""
    out: list[tuple[int, int, int]] = []
    for i, path in enumerate(files):
        meta = pq.ParquetFile(path).metadata
        names = meta.schema.to_arrow_schema().names
        missing = [c for c in required if c not in names]
        if missing:
            raise ValueError(
                f"{path} is not a triplet shard (missing columns {missing}); point source at <dataset>/data"
            )
        col = names.index("split")
        for rg in range(meta.num_row_groups):
            rgm = meta.row_group(rg)
            stats = rgm.column(col).statistics
            if stats is not None and stats.has_min_max and not (stats.min <= split <= stats.max):
                continue  # the statistics prove the split is absent: never read this row group
            if rgm.num_rows:
                out.append((i, rg, rgm.num_rows))
    return out


def _footer_sha256(path: Path) -> str:
    """SHA-256 of the Parquet footer (schema, row-group offsets, sizes and statistics): changes whenever the
    content does, costs one small read, and does not change when the file is merely copied (unlike mtime)."""
    with open(path, "rb") as f:
        f.seek(-8, 2)
        tail = f.read(8)
        if tail[4:] != b"PAR1":
            raise ValueError(f"{path} is not a Parquet file (no PAR1 magic at the end)")
        n = int.from_bytes(tail[:4], "little")
        f.seek(-8 - n, 2)
        return hashlib.sha256(f.read(n)).hexdigest()


def fingerprint(
    files: Sequence[Path], *, split: str, stage: str, tasks: Sequence[str], image_size: int | tuple[int, int]
) -> dict[str, Any]:
    """Every file (name, size, footer SHA-256, rows), the schema version, the split / stage / tasks / image
    size, and one digest over all of it (ShardDataset.fingerprint, which caches it)."""
    entries = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        version = (meta.metadata or {}).get(b"triplet_schema_version", b"").decode()
        entries.append(
            {
                "path": str(path),
                "size": path.stat().st_size,
                "footer_sha256": _footer_sha256(path),
                "rows": meta.num_rows,
                "schema_version": version,
            }
        )
    versions = sorted({f["schema_version"] for f in entries})
    body = {
        "schema_version": versions[0] if len(versions) == 1 else versions,
        "reader_schema_version": SCHEMA_VERSION,
        "split": split,
        "stage": stage,
        "tasks": list(tasks),
        "image_size": image_size,
        "rows": sum(f["rows"] for f in entries),
        "files": entries,
    }
    content = [{k: v for k, v in f.items() if k != "path"} | {"name": Path(f["path"]).name} for f in entries]
    key = json.dumps({**body, "files": content}, sort_keys=True, default=str)
    return {**body, "digest": hashlib.sha256(key.encode()).hexdigest()[:16]}
