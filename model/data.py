"""The trainer's data readers: triplet Parquet shards (`ShardDataset`) and the FUSAR-GPT release's JSONL + .npz
format (`ReleaseDataset`), both yielding the same `Sample`.

`ShardDataset` streams the shards ROW GROUP by row group (only the needed columns, one row group in memory at a
time, plus the shuffle buffer), keeps only the requested split (the `split` column written by the builder:
spatially blocked, never re-split here), shards the row groups over ranks x DataLoader workers without overlap,
and resumes exactly from `state_dict()`.

Stream order (what "exact resume" refers to). For one epoch e:
  1. units = the row groups that can hold the split (row-group statistics of `split` skip the others), in file
     order; when there are fewer units than consumers (ranks x workers) every row group is cut into equal
     contiguous row slices so that every consumer gets work.
  2. with shuffling (shuffle_buffer > 0) the units are permuted by a generator seeded with (seed, e).
  3. consumer c = rank * num_workers + worker takes units c, c + C, c + 2C, ... (C = world_size * num_workers):
     every row is read by exactly one consumer per epoch.
  4. a consumer expands its rows into samples (caption: one per chip; qa: one per QA item of the tasks) and
     passes them through a shuffle buffer seeded with (seed, e, c, C).
A rank's stream is its consumers' streams as the DataLoader delivers them: batches round-robin over the workers
(torch's in-order default), skipping a worker once it is exhausted. `state_dict()` stores (epoch, offset =
samples of the rank's stream consumed since the start of that epoch); on resume every consumer recomputes how
many of its own samples were consumed and skips them without decoding images.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image

from schemas import AEF_DIM, QA_TASKS, SCHEMA_VERSION, SPLITS
from schemas.aef import dequantize
from schemas.codec import to_rgb  # the chip codec's PNG -> RGB, re-exported for the trainer's callers
from schemas.frames import (  # the box conventions, shared with the builder's exports
    rescale_boxes_in_text,
    rescale_detection_answer,
    rescale_qa,
)

log = logging.getLogger(__name__)

STAGES = ("caption", "qa")
TASKS = ("caption", *QA_TASKS)
STATE_VERSION = 1


# == the sample ====================================================================================
@dataclass
class Sample:
    """One training / evaluation example: an image, its AlphaEarth anchors and a user/assistant chat."""

    id: str  # chip_id, plus "#<task>-<k>" for a QA sample (k = index among the chip's items of that task)
    image: Image.Image  # RGB, already resized by the reader (see resize_image)
    features: np.ndarray  # (S, 64) float32, de-quantized; zeros where invalid
    positions: np.ndarray  # (S, 2) float32, normalized image-local (y, x) in [0, 1]
    valid: np.ndarray  # (S,) bool
    messages: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}], user first
    task: str  # "caption" | "counting" | "localization" | "detection" | "classification"
    split: str


# == images and boxes ==============================================================================
def _round_to_multiple(n: int, multiple: int) -> int:
    return max(multiple, round(n / multiple) * multiple)


def resize_image(
    image: Image.Image, size: int | tuple[int, int], multiple: int = 28
) -> tuple[Image.Image, float, float]:
    """Resize to the base's patch grid; return (image, x scale, y scale) so boxes can follow the image.

    size: an int for a square image (the paper: 504), or (width, height) in PIL order. Each side is rounded
    to the nearest multiple of `multiple` (28 = Qwen2.5-VL's patch 14 x merge 2) so the processor does not
    resize again behind our back and the boxes stay exact.
    """
    if multiple < 1:
        raise ValueError(f"resize_image: multiple must be >= 1, got {multiple}")
    w, h = (size, size) if isinstance(size, int) else size
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: size must be positive, got {size}")
    w, h = _round_to_multiple(w, multiple), _round_to_multiple(h, multiple)
    sx, sy = w / image.width, h / image.height
    if (w, h) == image.size:
        return image, 1.0, 1.0
    return image.resize((w, h), Image.Resampling.BICUBIC), sx, sy


def _decode_png(data: bytes, size: int | tuple[int, int]) -> tuple[Image.Image, float, float]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = to_rgb(im)
    return resize_image(rgb, size)


# == the shard reader ==============================================================================
@dataclass(frozen=True)
class _Unit:
    """A slice of one row group: the work item dealt to a consumer."""

    file: int
    row_group: int
    start: int  # first row of the slice within the row group
    stop: int


@dataclass
class _Row:
    """What one kept chip row needs to become samples (no decoded image yet: decoding happens on yield)."""

    chip_id: str
    split: str
    png: bytes
    codes: np.ndarray  # (S, 64) int8
    valid: np.ndarray  # (S,) bool
    positions: np.ndarray  # (S, 2) float32
    texts: list[tuple[str, str, str, int]] = field(default_factory=list)  # (task, question, answer, k)


@dataclass
class _Spec:
    """One sample before materialisation: a row and which of its texts."""

    row: _Row
    index: int


_BASE_COLUMNS = ("chip_id", "split", "image", "aef_codes", "aef_valid", "aef_positions")
_REQUIRED = (*_BASE_COLUMNS, "messages", "qa")


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


class ShardDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Stream `Sample`s from triplet Parquet shards, row group by row group (see the module docstring).

    epochs: how many epochs one iteration (a "run") yields, from epoch set_epoch(e) on (default 0; None =
    forever). Iterating again repeats the run (like DistributedSampler without set_epoch), except right after
    load_state_dict, when the iteration continues from the loaded point to the end of the run.
    shuffle_buffer 0 = no shuffling at all (row groups in file order, samples in row order: evaluation order).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        split: str = "train",
        stage: str = "caption",
        tasks: Sequence[str] | None = None,
        image_size: int | tuple[int, int] = 504,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epochs: int | None = 1,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"ShardDataset: split must be one of {SPLITS}, got {split!r}")
        if stage not in STAGES:
            raise ValueError(f"ShardDataset: stage must be one of {STAGES}, got {stage!r}")
        if stage == "caption" and tasks is not None:
            raise ValueError("ShardDataset: tasks apply to stage 'qa' only; drop tasks for stage 'caption'")
        bad = [t for t in tasks or () if t not in QA_TASKS]
        if bad:
            raise ValueError(f"ShardDataset: unknown task(s) {bad}; choose from {QA_TASKS}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"ShardDataset: need 0 <= rank < world_size, got rank={rank} world_size={world_size}"
            )
        if shuffle_buffer < 0:
            raise ValueError(f"ShardDataset: shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"ShardDataset: epochs must be >= 1 or None, got {epochs}")
        self.files = _resolve_files(source)
        self.split, self.stage = split, stage
        self.tasks: tuple[str, ...] = tuple(tasks) if tasks else (QA_TASKS if stage == "qa" else ())
        self.image_size = image_size
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self._row_groups = self._plan()
        # The resume point: the epoch the next iteration starts in, and how many samples of the rank's
        # stream (counted from that epoch's start) were consumed; batch_size / num_workers describe the
        # DataLoader that consumed them (needed to map a rank offset to per-worker offsets).
        self._run_start, self._epoch, self._offset = 0, 0, 0
        self._pending = False  # a loaded resume point the next iteration starts from
        self._loader: tuple[int, int] = (1, 0)  # (batch_size, num_workers)
        self._fingerprint: dict[str, Any] | None = None

    # -- planning (metadata only) --------------------------------------------------------------------
    def _plan(self) -> list[tuple[int, int, int]]:
        """(file, row group, rows) of every row group that may hold the split, from the footers only."""
        out: list[tuple[int, int, int]] = []
        for i, path in enumerate(self.files):
            meta = pq.ParquetFile(path).metadata
            names = meta.schema.to_arrow_schema().names
            missing = [c for c in _REQUIRED if c not in names]
            if missing:
                raise ValueError(
                    f"{path} is not a triplet shard (missing columns {missing}); point source at <dataset>/data"
                )
            col = names.index("split")
            for rg in range(meta.num_row_groups):
                rgm = meta.row_group(rg)
                stats = rgm.column(col).statistics
                if stats is not None and stats.has_min_max and not (stats.min <= self.split <= stats.max):
                    continue  # the statistics prove the split is absent: never read this row group
                if rgm.num_rows:
                    out.append((i, rg, rgm.num_rows))
        log.debug("%d file(s), %d row group(s) may hold split %s", len(self.files), len(out), self.split)
        return out

    def _units(self, epoch: int, consumers: int) -> list[_Unit]:
        """This epoch's units in stream order (step 1-2 of the module docstring)."""
        units: list[_Unit] = []
        n = len(self._row_groups)
        parts = max(1, math.ceil(consumers / n)) if n else 1
        for f, rg, rows in self._row_groups:
            bounds = np.linspace(0, rows, min(parts, rows) + 1).round().astype(int)
            units += [_Unit(f, rg, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        if self.shuffle_buffer > 0:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(units))
            units = [units[i] for i in order]
        return units

    # -- reading -------------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The only columns ever read."""
        return [*_BASE_COLUMNS, "messages" if self.stage == "caption" else "qa"]

    def _read(self, unit: _Unit, columns: list[str]) -> pa.Table:
        """One row group (only `columns`), sliced to the unit and filtered to the split."""
        table = pq.ParquetFile(self.files[unit.file]).read_row_group(unit.row_group, columns=columns)
        table = table.slice(unit.start, unit.stop - unit.start)
        return table.filter(pc.equal(table.column("split"), self.split))

    def _texts(
        self, path: Path, chip_id: str, value: list[dict[str, str]]
    ) -> list[tuple[str, str, str, int]]:
        if self.stage == "caption":
            if len(value) < 2 or value[0]["role"] != "user" or value[1]["role"] != "assistant":
                raise ValueError(f"{path}: chip {chip_id} messages do not start with a user/assistant pair")
            return [("caption", value[0]["content"], value[1]["content"], 0)]
        seen: dict[str, int] = {}
        out = []
        for item in value:
            k = seen.get(item["task"], 0)
            seen[item["task"]] = k + 1
            if item["task"] in self.tasks:
                out.append((item["task"], item["question"], item["answer"], k))
        return out

    def _rows(self, unit: _Unit) -> Iterator[_Row]:
        table = self._read(unit, self.columns)
        if not table.num_rows:
            return
        path = self.files[unit.file]
        codes = _arrow_rows_2d(table.column("aef_codes"), np.dtype(np.int8), AEF_DIM)
        positions = _arrow_rows_2d(table.column("aef_positions"), np.dtype(np.float32), 2)
        valid = _arrow_rows_1d(table.column("aef_valid"), np.dtype(bool))
        text_col = table.column(self.columns[-1]).to_pylist()
        ids, splits = table.column("chip_id").to_pylist(), table.column("split").to_pylist()
        images = table.column("image").combine_chunks().field("bytes").to_pylist()
        del table  # only this row group's kept rows stay alive, as light per-row records
        for i, chip_id in enumerate(ids):
            if images[i] is None:
                raise ValueError(f"{path}: chip {chip_id} has no image bytes; rebuild the shard")
            texts = self._texts(path, chip_id, text_col[i])
            if texts:
                # copies, not views: a row kept in the shuffle buffer must not pin its row group's arrays
                yield _Row(
                    chip_id,
                    splits[i],
                    images[i],
                    codes[i].copy(),
                    valid[i].copy(),
                    positions[i].copy(),
                    texts,
                )

    def _count(self, unit: _Unit) -> int:
        """How many samples a unit yields, reading only the small columns (used to map resume offsets)."""
        table = self._read(unit, ["split", "messages" if self.stage == "caption" else "qa"])
        if self.stage == "caption":
            return int(table.num_rows)
        if not table.num_rows:
            return 0
        tasks = pc.struct_field(pc.list_flatten(table.column("qa")), "task")  # (items,) of the kept rows
        return int(pc.sum(pc.is_in(tasks, value_set=pa.array(self.tasks))).as_py() or 0)

    def _specs(self, epoch: int, consumer: int, consumers: int) -> Iterator[_Spec]:
        """The consumer's samples of one epoch, in stream order, before the shuffle buffer."""
        for unit in self._units(epoch, consumers)[consumer::consumers]:
            for row in self._rows(unit):
                for j in range(len(row.texts)):
                    yield _Spec(row, j)

    def _shuffled(self, specs: Iterator[_Spec], epoch: int, consumer: int, consumers: int) -> Iterator[_Spec]:
        """A seeded shuffle buffer: deterministic for (seed, epoch, consumer, consumers)."""
        if self.shuffle_buffer <= 1:
            yield from specs
            return
        rng = random.Random(f"{self.seed}/{epoch}/{consumer}/{consumers}")
        buf: list[_Spec] = []
        for spec in specs:
            if len(buf) < self.shuffle_buffer:
                buf.append(spec)
                continue
            i = rng.randrange(len(buf))
            yield buf[i]
            buf[i] = spec
        rng.shuffle(buf)
        yield from buf

    def _materialise(self, spec: _Spec) -> Sample:
        row = spec.row
        task, question, answer, k = row.texts[spec.index]
        image, sx, sy = _decode_png(row.png, self.image_size)
        question, answer = rescale_qa(task, question, answer, sx, sy, image.width, image.height)
        valid = np.asarray(row.valid, dtype=bool) & ~(row.codes == -128).any(-1)
        features = dequantize(row.codes)  # (S, 64)
        features[~valid] = 0.0
        return Sample(
            id=row.chip_id if task == "caption" else f"{row.chip_id}#{task}-{k}",
            image=image,
            features=features,
            positions=np.clip(np.asarray(row.positions, dtype=np.float32), 0.0, 1.0),
            valid=valid,
            messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            task=task,
            split=row.split,
        )

    # -- iteration -----------------------------------------------------------------------------------
    @property
    def end_epoch(self) -> int | None:
        """The epoch the current run stops before (None = never): run start + epochs."""
        return None if self.epochs is None else self._run_start + self.epochs

    def _epoch_range(self, start: int) -> Iterable[int]:
        e = start
        while self.end_epoch is None or e < self.end_epoch:
            yield e
            e += 1

    def consumer_stream(self, start_epoch: int, consumer: int, consumers: int) -> Iterator[tuple[int, _Spec]]:
        """(epoch, spec) of one consumer from start_epoch to the end of the run, across epochs."""
        for epoch in self._epoch_range(start_epoch):
            for spec in self._shuffled(self._specs(epoch, consumer, consumers), epoch, consumer, consumers):
                yield epoch, spec

    def _consumer_length(self, start_epoch: int, consumer: int, consumers: int) -> float:
        if self.end_epoch is None:
            return math.inf
        return sum(
            self._count(u)
            for e in range(start_epoch, self.end_epoch)
            for u in self._units(e, consumers)[consumer::consumers]
        )

    def _resume_plan(
        self, epoch: int, offset: int, num_workers: int, in_worker: bool
    ) -> tuple[list[int], int]:
        """Per worker role, how many of its samples the resume offset already consumed, and the role whose
        batch comes next (a fresh DataLoader starts its round-robin at worker 0, so worker k plays role
        (k + next) % num_workers to continue the interrupted cycle)."""
        batch_size, loader_workers = self._loader
        if offset and max(loader_workers, 1) != (num_workers if in_worker else 1):
            raise ValueError(
                f"resume state was taken with num_workers={loader_workers} but this DataLoader has "
                f"{num_workers if in_worker else 0}; resume with the same num_workers and batch_size"
            )
        if offset == 0 or num_workers == 1:
            return [offset] * num_workers, 0
        consumers = self.world_size * num_workers
        lengths = [
            self._consumer_length(epoch, self.rank * num_workers + w, consumers) for w in range(num_workers)
        ]
        return _round_robin_skip(offset, batch_size, lengths)

    def __iter__(self) -> Iterator[Sample]:
        """From the loaded resume point when load_state_dict was called since the last iteration, else from
        the start of the run (set_epoch): iterating twice without either repeats the same order."""
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        main = info is None
        epoch0, offset0 = (self._epoch, self._offset) if self._pending else (self._run_start, 0)
        if main:
            self._pending = False
            self._epoch, self._offset = epoch0, offset0
        taken, first = self._resume_plan(epoch0, offset0, num_workers, not main)
        role = (worker + first) % num_workers
        consumers = self.world_size * num_workers
        consumer = self.rank * num_workers + role
        skip = taken[role]
        current = epoch0
        for n, (epoch, spec) in enumerate(self.consumer_stream(epoch0, consumer, consumers)):
            if n < skip:
                continue
            sample = self._materialise(spec)
            if main:  # the main process sees exactly what is consumed: keep the resume point current
                if epoch != current:
                    self._epoch, self._offset, current = epoch, 0, epoch
                self._offset += 1
            yield sample
        if main and self.end_epoch is not None:  # the run is complete: its end is the position
            self._epoch, self._offset = self.end_epoch, 0

    # -- resume --------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start the next run (of `epochs` epochs) at the beginning of `epoch`, like
        DistributedSampler.set_epoch (the shuffle depends on the epoch)."""
        self._run_start = self._epoch = int(epoch)
        self._offset, self._pending = 0, False

    def state_dict(
        self, *, consumed: int | None = None, batch_size: int | None = None, num_workers: int = 0
    ) -> dict[str, Any]:
        """The resume point: epoch + offset into the rank's stream.

        Without arguments: what this object yielded in the main process (DataLoader num_workers=0; exact).
        With DataLoader workers the main process cannot see them, so pass consumed = samples the loop took
        since the start of the current epoch (set_epoch / last resume), with the DataLoader's batch_size and
        num_workers (torch's in-order delivery, drop_last=False).
        """
        offset = self._offset if consumed is None else int(consumed)
        if num_workers > 0 and batch_size is None:
            raise ValueError("state_dict: pass batch_size with num_workers > 0 (the DataLoader's batch size)")
        return {
            "version": STATE_VERSION,
            "run_start": self._run_start,
            "epoch": self._epoch,
            "offset": offset,
            "batch_size": int(batch_size or 1),
            "num_workers": int(num_workers),
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
            "data_digest": self.fingerprint()["digest"],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields exactly the samples not yet consumed, in the same order."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data state version {state.get('version')} != {STATE_VERSION}; cannot resume")
        for key in ("rank", "world_size", "seed", "shuffle_buffer"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"data state has {key}={state[key]} but the dataset has {getattr(self, key)}; "
                    "resume with the same settings"
                )
        if state["data_digest"] != self.fingerprint()["digest"]:
            raise ValueError(
                "data state was taken on other shards (fingerprint digest differs); use the same data"
            )
        self._run_start, self._epoch = int(state["run_start"]), int(state["epoch"])
        self._offset, self._pending = int(state["offset"]), True
        self._loader = (int(state["batch_size"]), int(state["num_workers"]))

    # -- provenance ----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint stores to say which data trained it: every file (name, size, footer SHA-256,
        rows), the schema version, the split / stage / tasks / image size, and one digest over all of it."""
        if self._fingerprint is None:
            files = []
            for path in self.files:
                meta = pq.ParquetFile(path).metadata
                version = (meta.metadata or {}).get(b"triplet_schema_version", b"").decode()
                files.append(
                    {
                        "path": str(path),
                        "size": path.stat().st_size,
                        "footer_sha256": _footer_sha256(path),
                        "rows": meta.num_rows,
                        "schema_version": version,
                    }
                )
            versions = sorted({f["schema_version"] for f in files})
            body = {
                "schema_version": versions[0] if len(versions) == 1 else versions,
                "reader_schema_version": SCHEMA_VERSION,
                "split": self.split,
                "stage": self.stage,
                "tasks": list(self.tasks),
                "image_size": self.image_size,
                "rows": sum(f["rows"] for f in files),
                "files": files,
            }
            content = [
                {k: v for k, v in f.items() if k != "path"} | {"name": Path(f["path"]).name} for f in files
            ]
            key = json.dumps({**body, "files": content}, sort_keys=True, default=str)
            self._fingerprint = {**body, "digest": hashlib.sha256(key.encode()).hexdigest()[:16]}
        return self._fingerprint


def _round_robin_skip(offset: int, batch_size: int, lengths: Sequence[float]) -> tuple[list[int], int]:
    """(per worker, how many of its samples the first `offset` samples of a DataLoader's stream hold; the
    worker whose batch comes next).

    torch's in-order DataLoader delivers one batch per worker round-robin, skipping exhausted workers; a
    worker's last batch may be short (drop_last=False)."""
    remaining = list(lengths)
    taken = [0] * len(lengths)
    left, w = offset, 0
    while left > 0:
        live = [k for k in range(len(lengths)) if remaining[k] > 0]
        if not live:
            raise ValueError(
                f"resume offset {offset} is past the end of the stream; start a new epoch instead"
            )
        w = next(k for k in [*range(w, len(lengths)), *range(w)] if remaining[k] > 0)
        n = int(min(batch_size, remaining[w], left))
        taken[w] += n
        remaining[w] -= n
        left -= n
        w = (w + 1) % len(lengths)
    return taken, w


__all__ = [
    "STAGES",
    "TASKS",
    "Sample",
    "ShardDataset",
    "rescale_boxes_in_text",
    "rescale_detection_answer",
    "resize_image",
    "to_rgb",
]
