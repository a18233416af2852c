"""bench/checker_speed.py: its corpus is seeded, and a checkout's checker run in a subprocess (the
`--before` path) finds exactly what this process's finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.checker_speed import ROOT, _other, check_all, with_variants
from tests.triplet_builder.text.factsheets import FACT_SHEETS, fact_sheet
from triplet_builder.text.offline import OfflineWriter


def _rows() -> list[dict[str, Any]]:
    rows = []
    for name in FACT_SHEETS:
        text = OfflineWriter().write(fact_sheet(name), "c0ffee0000000000")
        rows.append({"facts": fact_sheet(name), "fields": text.caption_fields, "qa": text.qa})
    return rows


def test_the_corpus_is_seeded_and_its_variants_find_problems(tmp_path: Path) -> None:
    rows = _rows()
    corpus = with_variants(rows)
    assert corpus == with_variants(rows) and corpus != with_variants(rows, seed=1)
    assert len(corpus) == 4 * len(rows) and corpus[0] == rows[0]
    res = check_all(corpus)
    assert res["rows"] == len(corpus) and 0 < res["rows_with_problems"] < len(corpus)
    assert check_all(corpus[::4])["problems"] == 0  # the offline writer's own text is consistent
    # the --before path: the same checker in a subprocess of this checkout gives the same problems
    corpus_file = tmp_path / "corpus.json"
    corpus_file.write_text(json.dumps(corpus))
    other = _other(ROOT, corpus_file)
    assert {k: other[k] for k in ("rows", "problems", "sha256")} == {
        k: res[k] for k in ("rows", "problems", "sha256")
    }
