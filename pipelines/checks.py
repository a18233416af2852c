"""Checks that need no scene pixels, run by `validate` and before `build` starts any work.

What a worker would only find out after tiling and embedding ran (an output folder that is a file, a
worker count that hangs or swamps the machine, a year the embeddings do not have) is said here, once,
in one line naming the field and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from triplet_builder.config import ConfigError, RegionConfig


def max_workers() -> int:
    """The most LocalCluster worker processes a build starts: 4 per CPU (each is a Python process of a
    few hundred MB; beyond that they only wait on each other and on memory)."""
    return 4 * (os.cpu_count() or 1)


def check_workers(n: int | None, *, what: str = "--workers") -> None:
    """Refuse a worker count below 1 (Dask waits forever for workers that never come) or above the cap."""
    if n is None:
        return
    if n < 1:
        raise ConfigError(f"{what} {n}: give at least 1 worker process")
    cap = max_workers()
    if n > cap:
        raise ConfigError(
            f"{what} {n} is more than {cap} (4 per CPU of this machine): give at most {cap}, or use "
            "--scheduler to run on a cluster"
        )


def check_output_dir(path: str | Path) -> None:
    """The output folder must be a folder (or creatable) and writable, before any work."""
    out = Path(path)
    field = f"output.dir {out}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{field} is a file, not a folder: choose a folder for output.dir")
    probe = out
    while not probe.exists():  # the nearest existing ancestor is where the folder would be created
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(
            f"{field}: {probe} is a file, so the folder cannot be created: choose another output.dir"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{field}: {probe} is not writable: fix its permissions or choose another output.dir"
        )


def check_embedding_years(cfg: RegionConfig) -> None:
    """Every year of a local COG mirror's region must have tiles in its index (a remote index is
    checked by the first task that reads it, so that validate makes no network request)."""
    emb = cfg.embeddings
    if emb.type != "cog" or emb.root is None or "://" in emb.root or cfg.years is None:
        return
    from triplet_builder.embeddings.index import load_index

    try:
        have = {int(y) for y in load_index(emb.root)["year"].unique()}
    except Exception as e:  # pyarrow / geopandas raise several types for a broken index
        raise ConfigError(
            f"embeddings.root {emb.root}: its aef_index.parquet cannot be read ({type(e).__name__}): "
            "rebuild it (triplet_builder.embeddings.index.build_index) or fetch it again"
        ) from None
    missing = [y for y in cfg.years if y not in have]
    if missing:
        raise ConfigError(
            f"years {missing}: embeddings.root {emb.root} has no AlphaEarth tiles for them (it has "
            f"{sorted(have)}): drop these years or add their tiles"
        )


def check_before_work(cfg: RegionConfig, workers: int | None = None) -> None:
    """All of the above, in the order a user would fix them."""
    check_workers(cfg.workers, what="workers")
    check_workers(workers)
    check_output_dir(cfg.output.dir)
    check_embedding_years(cfg)
