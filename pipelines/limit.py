"""`build --limit N`: a quick sample build of the plan's first N windows, and how it shares a folder.

The first N windows in task order (scene by scene, row by row) are kept; the task holding the N-th
window is cut there. The config hash does not change (the limit shapes no row), so tasks are
identified by their keys as in any rerun (pipelines/resume.py): a task the limit leaves whole keeps its
key and is reused by a later full build, the cut task gets a new key and runs again in full.

Folder rule: a full build after a limited one resumes it (reusing the identical tasks); a limited build
into a folder holding finished tasks it would not make (a fuller build's) is REFUSED unless
`--overwrite`, since a rerun removes the task files its plan does not make. The manifest's `limit`
says which kind of build the folder holds (null for a full one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pipelines.plan import BuildError, Plan
from pipelines.resume import task_key
from pipelines.stages import TaskSpec


def limit_plan(p: Plan, limit: int, config_hash: str) -> Plan:
    """The plan of the first `limit` windows (the plan itself when it has no more)."""
    if limit < 1:
        raise BuildError(f"--limit {limit}: use 1 or more windows")
    tasks: list[TaskSpec] = []
    left = limit
    for t in p.tasks:
        if left <= 0:
            break
        if len(t.windows) <= left:
            tasks.append(t)
        else:
            windows = t.windows[:left]
            key = task_key(config_hash, t.task_id, t.scene, windows)
            tasks.append(dataclasses.replace(t, windows=windows, key=key))
        left -= len(tasks[-1].windows)
    per_scene: dict[str, int] = {}
    for t in tasks:
        per_scene[t.scene.scene_id] = per_scene.get(t.scene.scene_id, 0) + len(t.windows)
    scenes = [s for s in p.scenes if s.scene_id in per_scene]
    return dataclasses.replace(p, scenes=scenes, tasks=tasks, windows_per_scene=per_scene)


def refuse_loss(out: Path, done: list[dict[str, Any]], limit: int) -> None:
    """A limited build must not delete finished tasks of a fuller build in the same folder."""
    kept = {int(m["task_id"]) for m in done}
    tasks = out / "_tasks"
    beyond = [f for f in tasks.glob("task-*.json") if int(f.stem.split("-")[1]) not in kept]
    if beyond:
        raise BuildError(
            f"output {out} holds {len(beyond)} finished task(s) that --limit {limit} would delete (a fuller "
            "build); choose another output.dir for the sample, or pass --overwrite to replace the build"
        )


__all__ = ["limit_plan", "refuse_loss"]
