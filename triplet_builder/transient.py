"""Which reject reasons are TRANSIENT: the chip was not judged, a service it needs was unavailable.

A task whose chips were rejected for such a reason is not reused by a rerun (pipelines/resume.py): it
runs again, and the request caches make sure nothing already paid for is asked again. Every other
reason is a verdict on the chip (nodata, split_guard, inconsistent_text...) and is kept.

The one place that says so. A stage naming a new unavailable-service reason follows the convention
`<service>_unavailable` and is transient without an edit here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

TRANSIENT_REASONS: frozenset[str] = frozenset(
    {
        "llm_unavailable",  # triplet_builder/text/llm.py: transport errors, 429 / 5xx after the retries
        "earthengine_unavailable",
        "cog_unavailable",
        "stac_unavailable",
        "task_failed",  # pipelines/executor.py: the task raised; its windows are recorded, then retried
    }
)


def is_transient(reason: str | None) -> bool:
    """True for a reason that says a service was unavailable, not that the chip is bad."""
    return reason is not None and (reason in TRANSIENT_REASONS or reason.endswith("_unavailable"))


def transient_count(rejected: Mapping[str, int] | Iterable[tuple[str, int]]) -> int:
    """How many rejects of a reason -> count table are transient."""
    items = rejected.items() if isinstance(rejected, Mapping) else rejected
    return sum(n for reason, n in items if is_transient(reason))
