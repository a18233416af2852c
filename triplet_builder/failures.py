"""What a failure means and what to do about it, in one line: the advice follows the cause.

A task fails for very different reasons (a truncated scene file, a corrupt AlphaEarth tile, a full
disk); telling the user to "fetch the scene again" for a full disk sends them the wrong way. Each cause
is recognised by its exception type or errno and gets its own advice; an unrecognised cause gets none
rather than a guess.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import rasterio.errors

# the output cannot take more bytes: no space, a per-file or per-process size limit, a quota
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def first_line(e: BaseException) -> str:
    """The exception's message, first line only (or its type when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def output_problem(e: BaseException, out_dir: str | Path) -> str | None:
    """One line for an OSError that is the output folder's fault (full, size limit, not writable)."""
    if not isinstance(e, OSError):
        return None
    code = e.errno
    if code is None:  # pyarrow's OSError carries the errno only in its text: "[errno 27] File too large"
        m = re.search(r"\[errno (\d+)\]", str(e), re.I)
        code = int(m.group(1)) if m else None
    if code is None:
        return None
    why = e.strerror or (errno.errorcode.get(code, "") + " " + os.strerror(code)).strip()
    if code in DISK_FULL:
        return (
            f"output folder {out_dir} cannot take more data ({why}): free space (or raise the file-size "
            "limit) or choose another output.dir, then rerun; finished tasks are kept"
        )
    if code in NOT_WRITABLE:
        return f"output folder {out_dir} is not writable ({why}): fix its permissions or choose another output.dir"
    return None


def task_failure_message(
    e: BaseException, *, scene_id: str, uris: list[str], task_id: int, out_dir: str | Path
) -> str:
    """The one-line message of a failed task; advice only where the cause is known."""
    out = output_problem(e, out_dir)
    if out is not None:
        return f"task {task_id} (scene {scene_id}): {out}"
    from triplet_builder.embeddings.cog import EmbeddingTileError

    where = f"scene {scene_id} ({', '.join(uris)}), task {task_id}"
    if isinstance(e, EmbeddingTileError):
        return f"{where}: {first_line(e)}"
    cause = f"{type(e).__name__}: {first_line(e)}"
    if isinstance(e, rasterio.errors.RasterioError):  # the scene's pixels could not be read
        return f"{where}: {cause}; the scene file is corrupt or truncated: fetch it again or remove it"
    return f"{where}: {cause}"
