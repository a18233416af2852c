"""bench/worker_scaling.py's steady rate on cases worked by hand."""

from __future__ import annotations

import pytest

from bench.worker_scaling import steady_rate


def test_steady_rate_starts_when_every_worker_has_finished_a_task() -> None:
    ends = [(3.0, 20), (1.0, 10), (5.0, 20), (2.0, 10)]  # (end time, windows), in any order
    assert steady_rate(ends, 1) == pytest.approx(50 / 4.0)  # from 1.0: tasks ending at 2, 3 and 5
    assert steady_rate(ends, 2) == pytest.approx(40 / 3.0)  # from 2.0: tasks ending at 3 and 5


def test_steady_rate_needs_a_task_after_the_first_round() -> None:
    with pytest.raises(ValueError, match="2 tasks for 2 workers"):
        steady_rate([(1.0, 10), (2.0, 10)], 2)
