"""Text-quality report of a built dataset (manifest `text_quality`, one line of the dataset card).

Why: a template writer can pass every consistency check and still teach a model little, when most
captions repeat the same sentences verbatim or state one fact twice. These figures make that visible
per build, over the KEPT rows (what a model trains on):

- `templates`: distinct sentence templates (sentences with numbers, number words and proper names
  masked) and their ratio to all sentences: how many ways of saying things the dataset has;
- `distinct_3gram_ratio`: distinct word 3-grams / all word 3-grams of the captions (lexical variety);
- `words`: caption length in words (min / median / p90 / max);
- `repeated_sentence_share`: share of sentence occurrences whose exact text occurs in 5 or more
  captions (`REPEAT_CAPTIONS`): boilerplate a model learns to recite;
- `captions_repeating_a_percentage`: captions stating the same percentage in two sentences (one fact
  said twice, e.g. the water share in the terrain and the water fields);
- `agreement_errors`: number-agreement slips ("one are", "cell 4 hold", "cells 1 and 2 is");
- `checker`: the consistency checker (text/consistency.py `check_caption`) run again on every kept
  caption against its own fact sheet: rows checked, rows with problems and problems (0 on a sound
  build: the filter stage rejects inconsistent text), and the share of sentences holding a value the
  checker verifies (a number, a number word or a grid cell).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from triplet_builder.text.consistency import NUMBER_WORDS, check_caption

REPEAT_CAPTIONS = 5  # a sentence found verbatim in this many captions or more counts as repeated
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORD_RE = re.compile(r"\b(?:" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.I)
_NAME_RE = re.compile(r"(?<=[^.!?]\s)[A-Z][\w'’-]*")  # a capitalised word that does not start the sentence
_WORD_RE = re.compile(r"[\w'’°%-]+")
_PERCENT_RE = re.compile(r"\d+(?:\.\d+)?\s*%")
_CHECKABLE_RE = re.compile(
    r"\d|\b(?:" + "|".join(NUMBER_WORDS) + r"|single|both)\b|\bcells?\b|\b(?:top|bottom|centre)-", re.I
)
_AGREEMENT_RES = (
    re.compile(r"\b(?:one|1)\s+(?:are|were|lie|hold|show|mix|fall)\b", re.I),
    re.compile(r"\bcell \d(?: \([^)]*\))?\s+(?:are|hold|show|lie|mix|fall)\b", re.I),
    re.compile(r"\bcells \d(?:(?:, | and )\d)+(?: \([^)]*\))?\s+(?:is|holds|shows|lies|mixes|falls)\b", re.I),
)


def sentences(caption: str) -> list[str]:
    """The sentences of a caption (split after . ! ? before a capital or a digit)."""
    return [s.strip() for s in _SENTENCE_SPLIT_RE.split(caption.strip()) if s.strip()]


def template_of(sentence: str) -> str:
    """A sentence with its proper names, numbers and number words masked (# and NAME)."""
    s = _NAME_RE.sub("NAME", sentence)
    s = _NUMBER_RE.sub("#", s)
    return _NUMBER_WORD_RE.sub("#", s)


def agreement_errors(text: str) -> int:
    """Number-agreement slips found by `_AGREEMENT_RES` (a heuristic: exact templates, not a parser)."""
    return sum(len(rx.findall(text)) for rx in _AGREEMENT_RES)


def _percentile(values: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


def quality_of(
    captions: Sequence[str],
    facts: Sequence[Mapping[str, Any]] | None = None,
    fields: Sequence[Mapping[str, str | None]] | None = None,
) -> dict[str, Any]:
    """The report over `captions` (see the module docstring); with `facts` and `fields` (one per caption)
    the checker figures too."""
    per_caption = [sentences(c) for c in captions]
    all_sentences = [s for ss in per_caption for s in ss]
    n_sent = len(all_sentences)
    in_captions: Counter[str] = Counter(s for ss in per_caption for s in set(ss))
    repeated = sum(1 for s in all_sentences if in_captions[s] >= REPEAT_CAPTIONS)
    templates = {template_of(s) for s in all_sentences}
    grams: list[tuple[str, ...]] = []
    words = []
    for c in captions:
        toks = [t.lower() for t in _WORD_RE.findall(c)]
        words.append(len(toks))
        grams += [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
    repeating_percent = 0
    for ss in per_caption:
        seen: Counter[str] = Counter()
        for s in ss:
            seen.update({re.sub(r"\s+", " ", p) for p in _PERCENT_RE.findall(s)})
        repeating_percent += any(n > 1 for n in seen.values())
    report: dict[str, Any] = {
        "captions": len(captions),
        "sentences": n_sent,
        "templates": len(templates),
        "template_ratio": round(len(templates) / n_sent, 4) if n_sent else 0.0,
        "distinct_3gram_ratio": round(len(set(grams)) / len(grams), 4) if grams else 0.0,
        "words": {
            "min": min(words, default=0),
            "median": _percentile(words, 50),
            "p90": _percentile(words, 90),
            "max": max(words, default=0),
        },
        "repeat_captions": REPEAT_CAPTIONS,
        "repeated_sentence_share": round(repeated / n_sent, 4) if n_sent else 0.0,
        "captions_repeating_a_percentage": repeating_percent,
        "agreement_errors": sum(agreement_errors(c) for c in captions),
    }
    checkable = sum(1 for s in all_sentences if _CHECKABLE_RE.search(s))
    checker: dict[str, Any] = {
        "sentences_with_checked_values": round(checkable / n_sent, 4) if n_sent else 0.0
    }
    if facts is not None and fields is not None:
        problems = [check_caption(f, fl) for f, fl in zip(facts, fields, strict=True)]
        checker.update(
            rows_checked=len(problems),
            rows_with_problems=sum(1 for p in problems if p),
            problems=sum(len(p) for p in problems),
        )
    report["checker"] = checker
    return report


def checker_counts(path: str | Path) -> dict[str, int] | None:
    """The checker run again on one written shard's kept rows against their own fact sheets: rows
    checked, rows with problems, problems; None when a row has no fact sheet (it cannot be checked).
    One shard's share of `text_quality`, so that a build can run it where the shards were written
    (pipelines/executor.py: on the workers, in parallel) and sum."""
    rows = bad = problems = 0
    for row in pq.read_table(path, columns=["caption_fields", "facts"]).to_pylist():
        facts = json.loads(row["facts"]) if row["facts"] else {}
        if not facts:
            return None
        found = check_caption(facts, row["caption_fields"] or {})
        rows += 1
        bad += bool(found)
        problems += len(found)
    return {"rows_checked": rows, "rows_with_problems": bad, "problems": problems}


def text_quality(
    out_dir: Path, data_files: Iterable[str], checked: Mapping[str, dict[str, int] | None] | None = None
) -> dict[str, Any]:
    """The report over the kept rows of the written shards (`data_files` relative to `out_dir`).
    `checked`: `checker_counts` of some of those files, already run (by file); the rest run here."""
    files = sorted(data_files)
    captions: list[str] = []
    for rel in files:
        table = pq.read_table(Path(out_dir) / rel, columns=["caption"])
        captions += [c or "" for c in table.column("caption").to_pylist()]
    report = quality_of(captions)
    done = dict(checked or {})
    counts = [done[rel] if rel in done else checker_counts(Path(out_dir) / rel) for rel in files]
    if all(c is not None for c in counts):  # else a row without a fact sheet: the text figures only
        report["checker"].update(
            {
                k: sum(c[k] for c in counts if c is not None)
                for k in ("rows_checked", "rows_with_problems", "problems")
            }
        )
    return report


def card_line(report: Mapping[str, Any] | None) -> list[str]:
    """The card's line about the text quality (nothing when the manifest has no report)."""
    if not report or not report.get("captions"):
        return []
    w = report["words"]
    chk = report.get("checker") or {}
    checked = (
        f"; the checker, run again on every caption, finds {chk['problems']} problem(s)"
        if "problems" in chk
        else ""
    )
    return [
        "",
        f"Text quality over the {report['captions']} kept captions: {report['templates']} distinct sentence "
        f"templates in {report['sentences']} sentences, distinct 3-gram ratio "
        f"{report['distinct_3gram_ratio']:.2f}, {report['repeated_sentence_share']:.0%} of sentences found "
        f"verbatim in {report['repeat_captions']}+ captions, caption length {w['min']} / {w['median']:.0f} / "
        f"{w['p90']:.0f} / {w['max']} words (min / median / p90 / max){checked} (manifest `text_quality`).",
    ]


__all__ = [
    "REPEAT_CAPTIONS",
    "agreement_errors",
    "card_line",
    "quality_of",
    "sentences",
    "template_of",
    "text_quality",
]
