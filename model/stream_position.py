"""The resume point of a shard stream (`ShardDataset`, model/data.py): where a rank's stream stands, what
`state_dict()` stores and `load_state_dict()` checks and restores, and how a rank's offset maps onto the
streams of the DataLoader workers that consumed it.

The position is the epoch the current run started in, the epoch the stream is in and the offset (samples of
the rank's stream consumed since that epoch's start), plus the batch size and worker count of the DataLoader
that consumed them. A rank's stream is its workers' streams delivered batch by batch round-robin (torch's
in-order default, skipping a worker once it is exhausted), so with workers the offset is cut into per-worker
skips by replaying that delivery (`_round_robin_skip`). Split from the shard reader (model/data.py), which
re-exports `_round_robin_skip`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATE_VERSION = 1


@dataclass
class StreamPosition:
    """The epoch the next iteration starts in and how many samples of the rank's stream (counted from that
    epoch's start) were consumed; `loader` = (batch_size, num_workers) of the DataLoader that consumed them
    (needed to map a rank offset to per-worker offsets)."""

    run_start: int = 0
    epoch: int = 0
    offset: int = 0
    pending: bool = False  # a loaded resume point the next iteration starts from
    loader: tuple[int, int] = (1, 0)  # (batch_size, num_workers)

    def start_run(self, epoch: int) -> None:
        """The next run starts at the beginning of `epoch` (ShardDataset.set_epoch)."""
        self.run_start = self.epoch = int(epoch)
        self.offset, self.pending = 0, False

    def state_dict(
        self,
        settings: Mapping[str, Any],
        digest: Callable[[], str],
        *,
        consumed: int | None,
        batch_size: int | None,
        num_workers: int,
    ) -> dict[str, Any]:
        """The resume point (ShardDataset.state_dict): settings = the dataset's rank, world_size, seed and
        shuffle_buffer, which a resume must match; digest = its data fingerprint's digest."""
        offset = self.offset if consumed is None else int(consumed)
        if num_workers > 0 and batch_size is None:
            raise ValueError("state_dict: pass batch_size with num_workers > 0 (the DataLoader's batch size)")
        return {
            "version": STATE_VERSION,
            "run_start": self.run_start,
            "epoch": self.epoch,
            "offset": offset,
            "batch_size": int(batch_size or 1),
            "num_workers": int(num_workers),
            **settings,
            "data_digest": digest(),
        }

    def load_state_dict(
        self, state: dict[str, Any], settings: Mapping[str, Any], digest: Callable[[], str]
    ) -> None:
        """Check a stored resume point against the dataset's settings and data digest, then make it the point
        the next iteration starts from (ShardDataset.load_state_dict)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data state version {state.get('version')} != {STATE_VERSION}; cannot resume")
        for key in ("rank", "world_size", "seed", "shuffle_buffer"):
            if state[key] != settings[key]:
                raise ValueError(
                    f"data state has {key}={state[key]} but the dataset has {settings[key]}; "
                    "resume with the same settings"
                )
        if state["data_digest"] != digest():
            raise ValueError(
                "data state was taken on other shards (fingerprint digest differs); use the same data"
            )
        self.run_start, self.epoch = int(state["run_start"]), int(state["epoch"])
        self.offset, self.pending = int(state["offset"]), True
        self.loader = (int(state["batch_size"]), int(state["num_workers"]))

    def worker_skips(
        self, offset: int, num_workers: int, in_worker: bool, lengths: Callable[[], Sequence[float]]
    ) -> tuple[list[int], int]:
        """Per worker role, how many of its samples the resume offset already consumed, and the role whose
        batch comes next (a fresh DataLoader starts its round-robin at worker 0, so worker k plays role
        (k + next) % num_workers to continue the interrupted cycle). lengths: every role's stream length
        from the resume epoch on, asked for only when the offset has to be cut between workers."""
        batch_size, loader_workers = self.loader
        if offset and max(loader_workers, 1) != (num_workers if in_worker else 1):
            raise ValueError(
                f"resume state was taken with num_workers={loader_workers} but this DataLoader has "
                f"{num_workers if in_worker else 0}; resume with the same num_workers and batch_size"
            )
        if offset == 0 or num_workers == 1:
            return [offset] * num_workers, 0
        return _round_robin_skip(offset, batch_size, lengths())


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
