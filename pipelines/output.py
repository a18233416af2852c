"""The output folder: whose files are there, one build at a time, and what `--overwrite` may delete.

A folder is a build's when everything in it is a file this project writes (pipelines/resume.py's task
files, `manifest.json`, the dataset card, the lock file); the card `README.md` counts only when it names
the config hash of the folder's manifest or task markers, so a source tree's own README is never taken
for one. A folder holding anything else is refused, with or without `--overwrite`, and `--overwrite`
deletes only the project's files, one by one.

One build per folder: an OS-level lock (`filelock`, flock on POSIX) on `<output>/.triplet-builder.lock`,
taken without waiting. The OS drops it when the process ends, however it ends (kill -9 included), so a
crashed build never leaves the folder locked; the lock FILE stays (it is recognised as the project's).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.plan import BuildError
from pipelines.resume import TASK_FOLDERS, read_marker
from triplet_builder.config import RegionConfig

LOCK_NAME = ".triplet-builder.lock"
MANIFEST = "manifest.json"
CARD = "README.md"
METADATA = "metadata.parquet"  # the image-free index, written with the manifest
PREVIEW = "preview.html"  # written by `preview` into a finished build


def lock_path(out: Path) -> Path:
    """The lock file of an output folder (tests hold it to stand for a concurrent build)."""
    return Path(out) / LOCK_NAME


def _manifest_hash(out: Path) -> str | None:
    """The config hash of the folder's manifest; "" for a manifest.json this project did not write."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    ours = isinstance(data, dict) and {"config_hash", "pipeline_version", "files"} <= data.keys()
    return str(data["config_hash"]) if ours else ""


def _marker_hashes(out: Path) -> set[str]:
    d = out / "_tasks"
    if not d.is_dir():
        return set()
    found = set()
    for f in d.glob("task-*.json"):
        m = read_marker(f)
        if m is not None and isinstance(m.get("config_hash"), str):
            found.add(m["config_hash"])
    return found


def built_with(out: Path) -> str | None:
    """The config hash of the dataset (finished or not) in `out`, or None when there is none."""
    h = _manifest_hash(out)
    if h:
        return h
    hashes = sorted(_marker_hashes(out))
    return hashes[0] if hashes else None


def _card_is_ours(path: Path, hashes: set[str]) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(f"Config hash: `{h}`" in text for h in hashes)


def foreign_entries(out: Path) -> list[str]:
    """What in `out` this project did not write (sorted relative names); [] for an empty folder or a build's."""
    hashes = _marker_hashes(out)
    mh = _manifest_hash(out)
    if mh:
        hashes.add(mh)
    foreign = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if name in TASK_FOLDERS and entry.is_dir() and not entry.is_symlink():
            pattern = TASK_FOLDERS[name]
            foreign += [
                f"{name}/{f.name}"
                for f in sorted(entry.iterdir())
                if not (f.is_file() and pattern.match(f.name))
            ]
        elif name == LOCK_NAME and entry.is_file():
            continue
        elif (
            name in (MANIFEST, f".{MANIFEST}.tmp", METADATA, f".{METADATA}.tmp", PREVIEW)
            and entry.is_file()
            and mh != ""
        ):
            continue
        elif name in (CARD, f".{CARD}.tmp") and entry.is_file() and _card_is_ours(entry, hashes):
            continue
        else:
            foreign.append(name + ("/" if entry.is_dir() else ""))
    return foreign


def check_output(cfg: RegionConfig, overwrite: bool) -> Path:
    """Refuse, before anything is written, an output that is a file or a folder holding others' files."""
    out = Path(cfg.output.dir)
    if out.exists() and not out.is_dir():
        raise BuildError(f"output.dir {out} is a file, not a folder: set output.dir to a new or empty folder")
    if out.is_dir():
        foreign = foreign_entries(out)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise BuildError(
                f"output {out} holds files this project did not write ({shown}); choose a new or empty "
                "output.dir"
                + (" (--overwrite deletes only what an earlier build wrote)" if overwrite else "")
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(
            f"output.dir {out} cannot be created ({e.strerror}): choose a writable folder"
        ) from None
    return out


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold the folder's lock for the length of a build; refuse at once when another build holds it."""
    lock = FileLock(str(lock_path(out)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BuildError(
            f"another build is writing to {out} (it holds {LOCK_NAME}); wait for it to end or choose another output.dir"
        ) from None
    try:
        yield
    finally:
        lock.release()


def claim_output(out: Path, cfg: RegionConfig, overwrite: bool) -> None:
    """Under the lock: refuse another config's dataset (unless --overwrite, which then deletes the
    project's files only)."""
    foreign = foreign_entries(out)  # again, under the lock: a build may have ended meanwhile
    if foreign:
        raise BuildError(
            f"output {out} holds files this project did not write ({foreign[0]}); choose another output.dir"
        )
    old = built_with(out)
    if old is not None and old != cfg.config_hash() and not overwrite:
        raise BuildError(
            f"output {out} holds a dataset built with another config ({old}); "
            "pass --overwrite to replace it or choose another output.dir"
        )
    if overwrite:
        remove_build(out)


def remove_build(out: Path) -> None:
    """Delete the files of an earlier build (call after foreign_entries(out) came back empty)."""
    for folder, pattern in TASK_FOLDERS.items():
        d = out / folder
        if d.is_dir():
            for f in d.iterdir():
                if f.is_file() and pattern.match(f.name):
                    f.unlink()
            if not any(d.iterdir()):
                d.rmdir()
    for name in (PREVIEW, METADATA, f".{METADATA}.tmp", MANIFEST, f".{MANIFEST}.tmp", CARD, f".{CARD}.tmp"):
        (out / name).unlink(missing_ok=True)


__all__ = [
    "LOCK_NAME",
    "build_lock",
    "built_with",
    "check_output",
    "claim_output",
    "foreign_entries",
    "lock_path",
]
