"""`triplet-builder publish OUTPUT REPO_OR_URL`: copy a verified build folder to a Hugging Face hub
dataset repository or to any fsspec URL (s3://, gs://, file://, a local folder).

Only the published files go: manifest.json, the card (README.md), metadata.parquet, data/ and rejects/
as the manifest lists them; never _tasks/ or anything else in the folder. Before a byte leaves, the
folder must pass `verify` (it is what its manifest says) and `publishable` (nothing of the building
machine in it: no absolute local path, no home or temporary folder, in the manifest, the card or the rows).

Hub: `HfApi.upload_folder`, which in huggingface_hub 2.x is the resumable, multi-commit upload
(`upload_large_folder` of 0.x/1.x was folded into it): a rerun after a failure skips what the repo or its
storage already holds. Token: --token, else $HF_TOKEN, else the login stored by `hf auth login`.
fsspec: each file is written under the URL, the manifest last (its presence means the copy is complete).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.verify import verify

log = logging.getLogger(__name__)

HUB_REPO = re.compile(r"^(?:hf://datasets/|https://huggingface\.co/datasets/)?(?P<repo>[\w.-]+/[\w.-]+)/?$")
# an absolute POSIX path of at least two segments, not inside a URL (the '/' after 'scheme:' or '//')
_ABS_POSIX = r"(?<![\w:/.~-])/(?!vsi)[\w.~-]+/[\w.~/-]*"
_ABS_WINDOWS = r"\b[A-Za-z]:\\[\w.~ -]+"
_FILE_URL = r"file://\S+"


class PublishError(RuntimeError):
    """The folder cannot be published; the message is one actionable line."""


def _mine() -> list[str]:
    """This machine's home and temporary folders (as written and resolved)."""
    tmp = tempfile.gettempdir()
    return sorted(p for p in {str(Path.home()), tmp, os.path.realpath(tmp)} if len(p) > 1)


def _local_pattern() -> re.Pattern[str]:
    """What a published file must not hold: absolute paths, file:// URLs, this machine's home and tmp."""
    mine = [rf"(?<![\w.-]){re.escape(p)}(?![\w.-])" for p in _mine()]
    return re.compile("|".join([*mine, _FILE_URL, _ABS_WINDOWS, _ABS_POSIX]))


def _prefilter() -> str:
    """An RE2 pattern (Arrow's regex engine: no look-around) selecting every value `_local_pattern` may
    match; the few rows it selects are then checked with `_local_pattern`."""
    mine = [re.escape(p) for p in _mine()]
    return "|".join([*mine, r"file://", r"[A-Za-z]:\\", r"(^|[^\w:/.~-])/[\w.~-]+/"])


def published_files(out: Path, manifest: dict[str, Any]) -> list[str]:
    """The files that go, relative to the folder: shards, rejects, metadata, the card, the manifest last."""
    files = [*manifest.get("files", []), *manifest.get("rejects_files", [])]
    if manifest.get("metadata"):
        files.append(manifest["metadata"]["file"])
    for f in files:
        if Path(f).is_absolute() or ".." in Path(f).parts:
            raise PublishError(
                f"{out}/manifest.json lists {f}: paths must be relative to the folder; rebuild it"
            )
    return [*files, "README.md", "manifest.json"]


def _walk(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]")
    elif isinstance(obj, str):
        yield where, obj


def _string_arrays(col: pa.ChunkedArray, name: str) -> Iterator[tuple[str, pa.Array]]:
    """Every string array in a column (nested lists and structs flattened), with its dotted name."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        yield name, arr
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _string_arrays(arr.flatten(), f"{name}[]")
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _string_arrays(arr.field(i), f"{name}.{t.field(i).name}")


def _parquet_leaks(path: Path, rel: str, pattern: re.Pattern[str]) -> list[str]:
    table = pq.read_table(path)
    prefilter = _prefilter()
    out = []
    for name in table.column_names:
        for field_name, arr in _string_arrays(table.column(name), name):
            candidates = pc.filter(arr, pc.fill_null(pc.match_substring_regex(arr, prefilter), False))
            for value in candidates.to_pylist():
                if m := pattern.search(value):
                    out.append(f"{rel}: column {field_name} holds a local path ({m.group(0)!r})")
                    break
    return out


def publishable(output_dir: str | Path) -> list[str]:
    """Where the folder's manifest, card or rows hold an absolute local path, a file:// URL, or this
    machine's home or temporary folder (one line each, naming the file and field); empty: none."""
    out = Path(output_dir)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    pattern = _local_pattern()
    problems = [
        f"manifest.json: {where} holds a local path ({m.group(0)!r})"
        for where, value in _walk(manifest, "")
        if (m := pattern.search(value))
    ]
    card = out / "README.md"
    if card.is_file():
        for n, line in enumerate(card.read_text(encoding="utf-8").splitlines(), 1):
            if m := pattern.search(line):
                problems.append(f"README.md: line {n} holds a local path ({m.group(0)!r})")
    for rel in published_files(out, manifest):
        if rel.endswith(".parquet") and (out / rel).is_file():
            problems += _parquet_leaks(out / rel, rel, pattern)
    return problems


def _check(out: Path) -> dict[str, Any]:
    problems = verify(out)
    if problems:
        raise PublishError(
            f"{out} does not pass verify ({len(problems)} problem(s), first: {problems[0]}); "
            f"run `triplet-builder verify {out}` and rebuild"
        )
    leaks = publishable(out)
    if leaks:
        raise PublishError(
            f"{out} holds paths of this machine ({len(leaks)} place(s), first: {leaks[0]}); "
            "rebuild with relative paths, public URLs or product ids"
        )
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _to_fsspec(out: Path, dest: str, files: list[str]) -> dict[str, Any]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(dest)
    root = root.rstrip("/")
    nbytes = 0
    for rel in files:  # the manifest is last: its presence at the destination means the copy is whole
        target = f"{root}/{rel}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(out / rel), target)
        nbytes += (out / rel).stat().st_size
    return {"dest": dest, "files": len(files), "bytes": nbytes, "commit": None}


def hub_token(token: str | None = None) -> str:
    """--token, else $HF_TOKEN, else the login `hf auth login` stored; one line when there is none."""
    from huggingface_hub import get_token

    found = token or os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then rerun publish")
    return found


def _to_hub(
    out: Path,
    repo_id: str,
    files: list[str],
    manifest: dict[str, Any],
    *,
    private: bool,
    token: str | None,
    endpoint: str | None,
) -> dict[str, Any]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    url = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=url, token=hub_token(token))
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(out),
            repo_id=repo_id,
            repo_type="dataset",
            allow_patterns=files,
            commit_message=f"Publish {manifest.get('name', out.name)} (config {manifest.get('config_hash', 'unknown')})",
        )
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PublishError(
            f"hub {url or 'huggingface.co'} dataset {repo_id}: {first}; rerun the same publish to resume "
            "(what the hub already holds is not sent again)"
        ) from e
    nbytes = sum((out / f).stat().st_size for f in files)
    return {"dest": repo_id, "files": len(files), "bytes": nbytes, "commit": getattr(info, "oid", None)}


def publish(
    output_dir: str | Path,
    dest: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Verify, check for local paths, then copy the published files to `dest`: a hub dataset repo
    (`owner/name`, `hf://datasets/owner/name`) or an fsspec URL / local folder (anything else; write
    `./owner/name` for a local folder of two parts). Returns {dest, files, bytes, commit}."""
    out = Path(output_dir)
    manifest = _check(out)
    files = published_files(out, manifest)
    m = HUB_REPO.match(dest)
    if m and not (dest.count("/") == 1 and Path(dest).is_dir()):  # an existing folder a/b stays a folder
        res = _to_hub(out, m.group("repo"), files, manifest, private=private, token=token, endpoint=endpoint)
    else:
        res = _to_fsspec(out, dest, files)
    log.info("published %d file(s), %d bytes to %s", res["files"], res["bytes"], res["dest"])
    return res


def run_cli(args: Any) -> int:
    """The `publish` subcommand: one line on success, one `error:` line and exit 2 on refusal."""
    import sys

    try:
        res = publish(args.output, args.dest, private=args.private)
    except (PublishError, OSError, ValueError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    commit = f", commit {res['commit']}" if res["commit"] else ""
    print(f"published {res['files']} file(s), {res['bytes']} bytes to {res['dest']}{commit}")
    return 0
