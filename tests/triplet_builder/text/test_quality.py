"""Tests of triplet_builder/text/quality.py: each figure on hand-made captions, the checker re-run, the
Parquet reader and the card line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from triplet_builder.text.offline import OfflineWriter
from triplet_builder.text.quality import (
    agreement_errors,
    card_line,
    quality_of,
    sentences,
    template_of,
    text_quality,
)

from .factsheets import fact_sheet


def test_sentences_and_templates() -> None:
    cap = "Open water covers about 35 % of the area. It lies 12.5 km north of Den Helder. Two ships lie in cell 4."
    assert sentences(cap) == [
        "Open water covers about 35 % of the area.",
        "It lies 12.5 km north of Den Helder.",
        "Two ships lie in cell 4.",
    ]
    assert template_of("It lies 12.5 km north of Den Helder.") == "It lies # km north of NAME NAME."
    assert template_of("Two ships lie in cell 4.") == "# ships lie in cell #."


def test_repeated_share_templates_and_percent_repeats() -> None:
    same = "No bright point targets are detected."
    caps = [f"Water covers about {p} %. {same}" for p in (5, 10, 15, 20, 25)] + ["Water covers about 30 %."]
    r = quality_of(caps)
    assert r["sentences"] == 11 and r["templates"] == 2
    assert r["repeated_sentence_share"] == round(5 / 11, 4)  # `same` is in 5 captions, the rest in one
    assert r["captions_repeating_a_percentage"] == 0
    r = quality_of(["Water covers about 35 %. Land covers about 35 %.", "Water covers 5 %."])
    assert r["captions_repeating_a_percentage"] == 1
    assert r["words"] == {"min": 4, "median": 7.0, "p90": 9.4, "max": 10}  # "%" is a word


def test_agreement_errors() -> None:
    assert agreement_errors("Of the 9 cells, one are mostly water.") == 1
    assert agreement_errors("Cell 4 (centre-left) hold land; cells 1 and 2 is water.") == 2
    assert agreement_errors("Cell 4 holds land; cells 1 and 2 are water; one of them lies on land.") == 0


def test_checker_is_run_again_on_each_caption() -> None:
    facts = fact_sheet("port")
    good = OfflineWriter().write(facts, "q").caption_fields
    bad = dict(good, water="Open water covers about 80 % of the valid area.")
    r = quality_of(["a.", "b."], [facts, facts], [good, bad])
    assert r["checker"]["rows_checked"] == 2 and r["checker"]["rows_with_problems"] == 1
    assert r["checker"]["problems"] >= 1


def test_text_quality_reads_shards_and_card_line(tmp_path: Path) -> None:
    import json

    facts = fact_sheet("open_water")
    rows = [OfflineWriter().write(facts, f"c{i}") for i in range(3)]
    table = pa.table(
        {
            "caption": [r.caption for r in rows],
            "caption_fields": [r.caption_fields for r in rows],
            "facts": [json.dumps(facts)] * 3,
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "train-00000-000.parquet")
    r = text_quality(tmp_path, ["data/train-00000-000.parquet"])
    assert r["captions"] == 3 and r["checker"]["problems"] == 0 and r["checker"]["rows_checked"] == 3
    line = " ".join(card_line(r))
    assert "over the 3 kept captions" in line and "finds 0 problem(s)" in line
    assert card_line(None) == [] and card_line({"captions": 0}) == []


def test_checked_shards_sum_to_the_serial_report(tmp_path: Path) -> None:
    """`checker_counts` per shard (what the build runs on its workers), summed, gives the serial report;
    a wrong caption counts in both, and a row without a fact sheet drops the checker figures."""
    import json

    from triplet_builder.text.quality import checker_counts

    facts = fact_sheet("open_water")
    rows = [OfflineWriter().write(facts, f"c{i}") for i in range(4)]
    fields = [r.caption_fields for r in rows]
    fields[1] = {**fields[1], "water": "The chip is entirely dry land."}  # a claim the facts refute
    (tmp_path / "data").mkdir()
    names = []
    for i in (0, 2):
        names.append(f"data/train-00000-00{i}.parquet")
        part = pa.table(
            {
                "caption": [r.caption for r in rows[i : i + 2]],
                "caption_fields": fields[i : i + 2],
                "facts": [json.dumps(facts)] * 2,
            }
        )
        pq.write_table(part, tmp_path / names[-1])
    serial = text_quality(tmp_path, names)
    assert serial["checker"]["rows_checked"] == 4 and serial["checker"]["rows_with_problems"] == 1
    every = {n: checker_counts(tmp_path / n) for n in names}
    assert text_quality(tmp_path, names, every) == serial
    assert text_quality(tmp_path, names, {names[0]: every[names[0]]}) == serial  # the rest run here
    empty = {"caption": ["x"], "caption_fields": [{"water": "x"}], "facts": pa.array([None], pa.string())}
    pq.write_table(pa.table(empty), tmp_path / "data" / "train-00000-009.parquet")
    with_blank = [*names, "data/train-00000-009.parquet"]
    assert checker_counts(tmp_path / with_blank[-1]) is None
    assert "rows_checked" not in text_quality(tmp_path, with_blank, every)["checker"]
