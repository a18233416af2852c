"""The trainer learns, and the anchors reach the answer through the TLM (bench/learning.py, tiny base, CPU).

Each run writes generated shards (schemas.triplet rows), trains both stages with model.train, and scores
both checkpoints with model.eval (greedy generate) on the held-out test split, beside the majority-answer
baseline. Seeded and deterministic on CPU; thresholds keep a wide margin (accuracy >= 0.9 where the task is
learnable, <= 0.55 where it must not be, with majority baselines of about 0.2-0.4 on 4 classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.learning import learn

pytestmark = pytest.mark.slow

LEARNED, NOT_LEARNED = 0.9, 0.55


@pytest.fixture(scope="module")
def count(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return learn("count", tmp_path_factory.mktemp("count"), steps=(150, 150), n_train=256, n_test=48)


@pytest.fixture(scope="module")
def anchors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("anchors")
    with_tlm = learn("anchors", root, steps=(100, 100), n_train=256, n_test=48)
    without = learn("anchors", root, tlm=False, steps=(100, 100), n_train=256, n_test=48)
    return {"tlm": with_tlm, "no_tlm": without}


def test_a_visible_answer_is_learned_in_both_stages(count: dict[str, Any]) -> None:
    """Counting bright targets: the caption (stage 1) and the counting answer (stage 2), through generate."""
    for stage in ("stage1", "stage2"):
        scores = count[stage]
        assert scores["majority"] <= NOT_LEARNED, count
        assert scores["TLM"] >= LEARNED, count
        assert count["losses"][stage]["last"] < 0.1 * count["losses"][stage]["first"], count


def test_an_answer_carried_only_by_the_anchors_needs_the_tlm(anchors: dict[str, Any]) -> None:
    """One image for every chip; the class is in the 64-d anchors only. With the TLM the model learns it
    (training loss and generate); the same weights with the anchors withheld, and a model trained without a
    TLM, stay at or below chance."""
    tlm, no_tlm = anchors["tlm"], anchors["no_tlm"]
    for stage in ("stage1", "stage2"):
        assert tlm[stage]["majority"] <= NOT_LEARNED, tlm
        assert tlm[stage]["TLM"] >= LEARNED, tlm
        assert tlm[stage]["no TLM"] <= NOT_LEARNED, tlm
        assert no_tlm[stage]["model"] <= NOT_LEARNED, no_tlm
    # stage 2's training loss: near zero with the TLM; without it, near the prior's ln(4) over the ~7 answer
    # tokens (only the first letter of the class word is uncertain)
    assert tlm["losses"]["stage2"]["last"] < 0.02, tlm
    assert no_tlm["losses"]["stage2"]["last"] > 0.1, no_tlm
