"""Warnings counted by kind instead of printed one by one.

A build against a flaky or dead service would otherwise print a line per retry from every worker (GDAL's
"HTTP error ... Retrying", a corrupt cache entry, ...). `install()` puts a handler on the root logger of a
process that counts WARNING and above by kind (logger name and message template, before its arguments)
and keeps the first message of each kind; the executor collects the tallies of every worker with
`drain()` and prints one line per kind with its count at the end of the build. With `--debug` nothing
is installed and every line is printed as before."""

from __future__ import annotations

import logging
import threading
from typing import Any


class TallyHandler(logging.Handler):
    """Counts records by (logger, template); keeps the first formatted message of each."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._lock2 = threading.Lock()
        self.counts: dict[tuple[str, str], list[Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, str(record.msg))
        with self._lock2:
            entry = self.counts.get(key)
            if entry is None:
                try:
                    first = record.getMessage().splitlines()[0][:300]
                except Exception:  # a record whose arguments do not format: keep its template
                    first = str(record.msg)[:300]
                self.counts[key] = [0, first, record.levelname]
                entry = self.counts[key]
            entry[0] += 1


_handler: TallyHandler | None = None


def install() -> None:
    """Count this process's warnings instead of printing them (idempotent)."""
    global _handler
    if _handler is None:
        _handler = TallyHandler()
        root = logging.getLogger()
        root.addHandler(_handler)
        if root.level > logging.WARNING or root.level == logging.NOTSET:
            root.setLevel(logging.WARNING)


def uninstall() -> None:
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None


def drain() -> list[dict[str, Any]]:
    """The tally since the last drain: [{logger, template, level, count, first}], and reset it."""
    if _handler is None:
        return []
    with _handler._lock2:
        out = [
            {"logger": name, "template": template, "level": level, "count": n, "first": first}
            for (name, template), (n, first, level) in _handler.counts.items()
        ]
        _handler.counts = {}
    return out


def merge(tallies: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Tallies of several processes as one: counts of the same kind (logger, template) added."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for tally in tallies:
        for t in tally:
            key = (t["logger"], t["template"])
            if key in out:
                out[key]["count"] += t["count"]
            else:
                out[key] = dict(t)
    return sorted(out.values(), key=lambda t: -t["count"])


__all__ = ["TallyHandler", "drain", "install", "merge", "uninstall"]
