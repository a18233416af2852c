"""Resume: which finished tasks a rerun may reuse, and the removal of everything the plan did not make.

A task is identified by its KEY: the pipeline version, the row-shaping config hash, the task number (it
names the shards), the scene (id, portable file names, size, radiometry) and the exact list of windows.
The version is there because a recipe that changes rows (the PNG's zlib level, a caption template)
bumps it: a rerun after an upgrade runs every task again instead of mixing two versions' rows under one
manifest. Changing an
execution setting that regroups the windows (`chips_per_task`) gives new keys, so those tasks run again
and the old ones' files are removed: the folder always holds exactly the current plan's dataset.

A finished task's marker (`_tasks/task-NNNNN.json`) holds its key and the size and SHA-256 of each file
it published. A rerun reuses a task only when the key matches, its files are all there with that size
and hash, and none of its chips was rejected for a transient reason (triplet_builder/transient.py);
any other task runs again (the request caches make sure no paid request is repeated).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.stages import TaskSpec, task_marker
from triplet_builder import __version__
from triplet_builder.portable import portable_uri
from triplet_builder.record import SceneRef, Window
from triplet_builder.transient import transient_count
from triplet_builder.writers.parquet import file_sha256

log = logging.getLogger(__name__)

# every file a build writes under its output folder, temporaries included (`.NAME.tmp`)
DATA_FILE = re.compile(r"^\.?(train|validation|test)-\d{5}-\d{3}\.parquet(\.tmp)?$")
REJECTS_FILE = re.compile(r"^\.?rejects-\d{5}\.parquet(\.tmp)?$")
MARKER_FILE = re.compile(r"^\.?task-\d{5}\.json(\.tmp)?$")
TASK_FOLDERS = {"data": DATA_FILE, "rejects": REJECTS_FILE, "_tasks": MARKER_FILE}


def task_key(config_hash: str, task_id: int, scene: SceneRef, windows: Iterable[Window]) -> str:
    """The identity of a task: everything that shapes its rows and names its files (32 hex)."""
    ident = {
        "pipeline_version": __version__,
        "config_hash": config_hash,
        "task_id": task_id,
        "scene": {
            "scene_id": scene.scene_id,
            "bands": [[portable_uri(b.uri), b.band, b.polarisation] for b in scene.bands],
            "acquired": scene.acquired.isoformat(),
            "size": [scene.width, scene.height],
            "scale": scene.scale.value,
            "backscatter": scene.backscatter.value,
            "georef": scene.georef.value,
            "crs": scene.crs,
            "pixel_size_m": scene.pixel_size_m,
            "nodata": scene.nodata,
        },
        "windows": [[w.col_off, w.row_off, w.width, w.height, w.out_width, w.out_height] for w in windows],
    }
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class ResumeState:
    """What a rerun found: the reusable results, the tasks to run, and why the others run again."""

    done: list[dict[str, Any]] = field(default_factory=list)
    todo: list[TaskSpec] = field(default_factory=list)
    rerun: dict[str, int] = field(default_factory=dict)  # reason -> tasks: changed, damaged, transient


def read_marker(path: Path) -> dict[str, Any] | None:
    """A task marker, or None when absent or unreadable (a half-written marker is never trusted)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def files_intact(out: Path, marker: dict[str, Any]) -> bool:
    """Every file the marker lists is there with its recorded size and SHA-256."""
    checksums = (marker.get("written") or {}).get("checksums")
    if not isinstance(checksums, dict):
        return False  # a marker of an older build, without proof of its files
    for name, info in checksums.items():
        f = out / name
        try:
            if f.stat().st_size != info["bytes"] or file_sha256(f) != info["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def resume_state(out: Path, tasks: list[TaskSpec]) -> ResumeState:
    """Split the plan's tasks into those finished by an earlier run (reused) and those to run."""
    state = ResumeState()
    for t in tasks:
        prev = read_marker(task_marker(out, t.task_id))
        why = None
        if prev is None:
            state.todo.append(t)
            continue
        if prev.get("key") != t.key:
            why = "changed"
        elif transient_count(_rejected(prev)):
            why = "transient"
        elif not files_intact(out, prev):
            why = "damaged"
        if why is None:
            state.done.append(prev)
        else:
            state.rerun[why] = state.rerun.get(why, 0) + 1
            state.todo.append(t)
    return state


def _rejected(marker: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for st in (marker.get("stats") or {}).values():
        for reason, n in (st.get("rejected") or {}).items():
            out[reason] = out.get(reason, 0) + int(n)
    return out


def remove_unclaimed(out: Path, done: list[dict[str, Any]]) -> list[str]:
    """Delete every task file (shards, rejects, markers, temporaries) no reused task claims; returns them.

    Run before the tasks, under the build's lock: the tasks to run write their files afresh, and files of
    tasks that are no longer in the plan (another `chips_per_task`, a scene gone) are never left beside it.
    The old manifest goes too: until the new one is written, the folder does not claim to be complete.
    """
    (out / "preview.html").unlink(missing_ok=True)  # the old build's preview and index go before its manifest
    (out / "metadata.parquet").unlink(missing_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    keep = {f"_tasks/task-{int(m['task_id']):05d}.json" for m in done}
    for m in done:
        keep.update(m["written"]["checksums"])
    removed = []
    for folder, pattern in TASK_FOLDERS.items():
        d = out / folder
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            name = f"{folder}/{f.name}"
            if f.is_file() and pattern.match(f.name) and name not in keep:
                f.unlink()
                removed.append(name)
    if removed:
        log.info("removed %d file(s) the current plan does not make", len(removed))
    return removed


__all__ = ["ResumeState", "files_intact", "remove_unclaimed", "resume_state", "task_key"]
