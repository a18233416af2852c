"""FUSAR-GPT's evaluation metrics as pure functions over answer strings (no torch): counting accuracy, 3 x 3
localization Acc@100 / Acc@50 / Top1, classification accuracy, detection precision / recall / F1 at an IoU
threshold, caption BLEU-4 and ROUGE-L; `evaluate` groups records by task and `report_table` renders models
side by side.

Every score is a fraction in [0, 1] (BLEU-4 too, sacrebleu's score / 100); `report_table` shows percentages.
Model answers are parsed robustly (first integer, code fences, single quotes, trailing text); an answer that
cannot be parsed is scored as wrong, never skipped, so a model cannot gain by emitting garbage.

Readings we chose where the paper is silent (see /work/shared/reference/fusar-gpt.md, "inferred"):
- Localization Acc@50: right >= half of the reference cells AND wrong <= right (a prediction listing all nine
  cells must not pass); Top1: at least one predicted cell is a reference cell. With no reference cell
  ('None') all three require the prediction to be empty too. So Acc@100 <= Acc@50 <= Top1 per sample.
- Detection: greedy one-to-one matching by IoU (highest first) within each class label; micro-averaged over
  all images. With nothing to find and nothing predicted, precision = recall = 1.
- Classification: labels match after normalisation (case, punctuation, articles, '_' / '-', plural 's').
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_INT_RE = re.compile(r"(?<![\d.])-?\d+(?![\d.]*\d)")
_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r"|none|no)\b", re.I)
_FENCE_RE = re.compile(r"```(?:json|python)?\s*(.*?)```", re.S | re.I)
_ARTICLES = {"a", "an", "the"}


def _check_lengths(preds: Sequence[Any], refs: Sequence[Any]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions for {len(refs)} references; pass one per reference")


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


# == counting ======================================================================================
def parse_count(text: str) -> int | None:
    """The first integer of an answer ('There are 3 ships.' -> 3); number words and 'None' / 'no' (0) when
    there is no digit; None when nothing reads as a count."""
    m = _INT_RE.search(text)
    if m:
        return int(m.group(0))
    w = _WORD_RE.search(text)
    if w:
        word = w.group(1).lower()
        return 0 if word in ("none", "no") else _NUMBER_WORDS[word]
    return None


def counting_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Exact integer match; an unparseable prediction is wrong."""
    _check_lengths(preds, refs)
    scores = []
    for p, r in zip(preds, refs, strict=True):
        ref = parse_count(r)
        if ref is None:
            raise ValueError(f"counting reference {r!r} holds no integer")
        scores.append(float(parse_count(p) == ref))
    return _mean(scores)


# == localization ==================================================================================
def parse_cells(text: str) -> set[int]:
    """The 3 x 3 cells (1..9) an answer names: '1,2,7', 'cells 1 and 7', '[1, 7]'; 'None' -> empty."""
    text = re.sub(r"3\s*[x×*]\s*3", " ", text)  # the grid's name is not a cell
    return {int(d) for d in re.findall(r"(?<![\d.])[1-9](?![\d.]*\d)", text)}


def localization_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """{"acc@100": exact set, "acc@50": right >= half the reference and wrong <= right, "top1": at least one
    right} (module docstring for the readings); an empty reference needs an empty prediction."""
    _check_lengths(preds, refs)
    acc100, acc50, top1 = [], [], []
    for p, r in zip(preds, refs, strict=True):
        pred, ref = parse_cells(p), parse_cells(r)
        right, wrong = len(pred & ref), len(pred - ref)
        if not ref:
            ok = not pred
            acc100.append(ok)
            acc50.append(ok)
            top1.append(ok)
            continue
        acc100.append(pred == ref)
        acc50.append(2 * right >= len(ref) and wrong <= right)
        top1.append(right >= 1)
    return {
        "acc@100": _mean(map(float, acc100)),
        "acc@50": _mean(map(float, acc50)),
        "top1": _mean(map(float, top1)),
    }


# == classification ================================================================================
def normalize_label(text: str) -> str:
    """'The Ship.' -> 'ship'; 'cargo_ships' -> 'cargo ship': case, punctuation, articles, separators and a
    plural 's' do not count."""
    words = re.sub(r"[_\-/]", " ", text.lower())
    words = re.sub(r"[^\w\s]", " ", words)
    toks = [t for t in words.split() if t not in _ARTICLES]
    if toks and len(toks[-1]) > 3 and toks[-1].endswith("s") and not toks[-1].endswith("ss"):
        toks[-1] = toks[-1][:-1]
    return " ".join(toks)


def classification_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Normalised label equality (normalize_label)."""
    _check_lengths(preds, refs)
    return _mean(float(normalize_label(p) == normalize_label(r)) for p, r in zip(preds, refs, strict=True))


# == detection =====================================================================================
Box = tuple[float, float, float, float]


def _first_bracketed(text: str) -> str | None:
    """The first balanced [...] or {...} span (brackets inside strings are not special enough to matter)."""
    start = next((i for i, c in enumerate(text) if c in "[{"), None)
    if start is None:
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "[{":
            depth += 1
        elif text[i] in "]}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _loads(span: str) -> Any:
    try:
        return json.loads(span)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(span)  # single quotes, Python literals
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def parse_detections(text: str) -> list[tuple[Box, str]] | None:
    """[(box, label)] from a detection answer; [] for 'None' / an empty list; None when unparseable.

    Tolerates code fences, single quotes, text around the JSON, one dict instead of a list, and 'bbox' for
    'bbox_2d'. Items without a 4-number box are dropped (they can match nothing)."""
    text = text.strip()
    fence = _FENCE_RE.search(text)
    if fence:
        text = fence.group(1).strip()
    if re.fullmatch(r"(?i)none\.?|null|\[\s*\]", text):
        return []
    span = _first_bracketed(text)
    if span is None:
        return None
    value = _loads(span)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    out: list[tuple[Box, str]] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        box = item.get("bbox_2d", item.get("bbox"))
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            continue
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            continue
        out.append(((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), str(item.get("label", ""))))
    return out


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes (continuous coordinates)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(pred: list[tuple[Box, str]], ref: list[tuple[Box, str]], iou: float) -> int:
    """True positives of one image: greedy one-to-one matching by IoU (highest first) within each label."""
    tp = 0
    labels = {normalize_label(label) for _, label in ref}
    for label in labels:
        p = [b for b, lab in pred if normalize_label(lab) == label]
        r = [b for b, lab in ref if normalize_label(lab) == label]
        pairs = sorted(
            ((box_iou(pb, rb), i, j) for i, pb in enumerate(p) for j, rb in enumerate(r)),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        used_p: set[int] = set()
        used_r: set[int] = set()
        for v, i, j in pairs:
            if v < iou:
                break
            if i in used_p or j in used_r:
                continue
            used_p.add(i)
            used_r.add(j)
            tp += 1
    return tp


def detection_prf(preds: Sequence[str], refs: Sequence[str], iou: float = 0.5) -> dict[str, float]:
    """{"precision", "recall", "f1", "tp", "fp", "fn"} micro-averaged over images at an IoU threshold
    (a match needs IoU >= iou and the same normalised label). An unparseable prediction is a miss: all its
    image's reference boxes count as false negatives."""
    _check_lengths(preds, refs)
    tp = fp = fn = 0
    for p, r in zip(preds, refs, strict=True):
        ref = parse_detections(r)
        if ref is None:
            raise ValueError(f"detection reference is not parseable: {r[:80]!r}")
        pred = parse_detections(p) or []
        t = match_detections(pred, ref, iou)
        tp, fp, fn = tp + t, fp + len(pred) - t, fn + len(ref) - t
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


# == captions ======================================================================================
def bleu4(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenisation, exponential smoothing) as a fraction."""
    import sacrebleu

    _check_lengths(preds, refs)
    if not preds:
        return math.nan
    return float(sacrebleu.corpus_bleu(list(preds), [list(refs)]).score) / 100.0


def rouge_l(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    _check_lengths(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _mean(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True))


# == grouping and reporting ========================================================================
def evaluate(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Records {"task", "prediction", "reference"} -> {task: {metric: value, "n": count}}."""
    groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for i, rec in enumerate(records):
        missing = [k for k in ("task", "prediction", "reference") if k not in rec]
        if missing:
            raise ValueError(f"evaluation record {i} lacks {missing}; each needs task, prediction, reference")
        preds, refs = groups[str(rec["task"])]
        preds.append("" if rec["prediction"] is None else str(rec["prediction"]))
        refs.append(str(rec["reference"]))
    out: dict[str, dict[str, float]] = {}
    for task, (preds, refs) in sorted(groups.items()):
        out[task] = {**_task_metrics(task, preds, refs), "n": float(len(preds))}
    return out


def _task_metrics(task: str, preds: list[str], refs: list[str]) -> dict[str, float]:
    if task == "counting":
        return {"accuracy": counting_accuracy(preds, refs)}
    if task == "localization":
        return localization_scores(preds, refs)
    if task == "classification":
        return {"accuracy": classification_accuracy(preds, refs)}
    if task == "detection":
        out: dict[str, float] = {}
        for thr in (0.25, 0.5):
            prf = detection_prf(preds, refs, iou=thr)
            out |= {f"{k}@{thr:g}": float(prf[k]) for k in ("precision", "recall", "f1")}
        return out
    if task == "caption":
        return {"bleu4": bleu4(preds, refs), "rouge_l": rouge_l(preds, refs)}
    raise ValueError(
        f"unknown task {task!r}; expected caption, counting, localization, detection, classification"
    )


def report_table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown: one row per (task, metric), one column per model (e.g. {"TLM": evaluate(...), "no TLM": ...}).
    Scores are shown in percent with two decimals, counts as integers, a missing value as '-'."""
    models = list(results)
    if not models:
        raise ValueError("report_table: no results; pass {model name: evaluate(records)}")
    rows: dict[tuple[str, str], None] = {}
    for res in results.values():
        for task, metrics in res.items():
            for metric in metrics:
                rows[(task, metric)] = None
    lines = ["| task | metric | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for task, metric in sorted(rows, key=lambda tm: (tm[0], tm[1] == "n", tm[1])):
        cells = [_cell(results[m].get(task, {}).get(metric), metric) for m in models]
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric == "n":
        return str(int(value))
    return f"{100 * value:.2f}"


__all__ = [
    "bleu4",
    "box_iou",
    "classification_accuracy",
    "counting_accuracy",
    "detection_prf",
    "evaluate",
    "localization_scores",
    "match_detections",
    "normalize_label",
    "parse_cells",
    "parse_count",
    "parse_detections",
    "report_table",
    "rouge_l",
]
