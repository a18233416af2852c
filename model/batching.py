"""Batches of samples: in stream order, or grouped by length so that padding stays small, resumable exactly.

Chats differ in length (a one-word QA answer vs a long caption); padding every chat of a batch to its
longest wastes the GPU on pad tokens. `LengthGrouped` reads `group` batches' worth of samples from the
(already shuffled) stream, sorts them by token length, cuts them into batches and yields those batches
in a seeded random order: batches hold chats of similar length, and the order of lengths stays random.

Exact resume: the state is the dataset's state at the START of the current group plus how many of its
batches were already yielded; on resume the group is read again (the dataset is deterministic from its
state) and those batches are skipped, so a resumed run sees the very batches an unbroken run sees.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from model.data import Sample


class Resumable(Protocol):
    """What the dataset offers: iteration and its exact position (model.data.ShardDataset)."""

    def __iter__(self) -> Iterator[Sample]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def batches(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    """Group a sample stream into lists of `size` (the last, short one included)."""
    buf: list[Sample] = []
    for s in samples:
        buf.append(s)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


class LengthGrouped:
    """Batches of `size` samples of similar length, from groups of `group` batches; resumable exactly.

    length: a sample's length in tokens (the trainer passes the chat's text token count; all images of a
    run share one size, so their visual tokens add the same to every chat).
    """

    def __init__(
        self,
        dataset: Resumable,
        size: int,
        group: int,
        length: Callable[[Sample], int],
        *,
        seed: int = 0,
    ) -> None:
        if size < 1 or group < 1:
            raise ValueError(f"LengthGrouped needs size >= 1 and group >= 1, got {size} and {group}")
        self.dataset, self.size, self.group, self.length, self.seed = dataset, size, group, length, seed
        self._start: dict[str, Any] | None = None  # the dataset's state at the current group's start
        self._done = 0  # batches of the current group already yielded
        self._index = 0  # groups started so far (seeds each group's batch order)
        self._skip = 0  # batches to skip in the first group after a resume

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is: re-reading from `data` and skipping `done` batches continues exactly."""
        data = self._start if self._start is not None else self.dataset.state_dict()
        return {"data": data, "done": self._done, "index": self._index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state["data"])
        self._skip, self._index = int(state["done"]), int(state["index"])

    def __iter__(self) -> Iterator[list[Sample]]:
        stream = iter(self.dataset)
        while True:
            self._start = self.dataset.state_dict()
            chunk: list[Sample] = []
            for s in stream:
                chunk.append(s)
                if len(chunk) == self.size * self.group:
                    break
            if not chunk:
                return
            groups = self.plan([self.length(s) for s in chunk], self._index)
            self._done = 0
            for k, idx in enumerate(groups):
                if k < self._skip:
                    self._done = k + 1
                    continue
                self._done = k + 1
                yield [chunk[i] for i in idx]
            self._skip = 0
            self._index += 1

    def plan(self, lengths: Sequence[int], index: int) -> list[list[int]]:
        """Positions of each batch of a group: sorted by length (stable), cut in `size`, order shuffled."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        cut = [order[i : i + self.size] for i in range(0, len(order), self.size)]
        random.Random(f"{self.seed}:{index}").shuffle(cut)
        return cut


def padding_share(lengths: Sequence[Sequence[float]]) -> float:
    """Pad tokens / all tokens of batches padded to their longest member (lengths: one list per batch)."""
    slots = sum(max(b) * len(b) for b in lengths if b)
    real = sum(sum(b) for b in lengths)
    return 0.0 if slots == 0 else 1.0 - real / slots


__all__ = ["LengthGrouped", "batches", "padding_share"]
