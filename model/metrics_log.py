"""What a training stage writes beside its checkpoints: metrics.jsonl (one JSON line per logged step and per
eval loss) and loss.png (the training and eval losses against the step).

A resumed run appends to the metrics file it continues, dropping the lines past the resumed step (a crashed
run's tail, or a line torn by a killed process) so that every step appears once; a fresh run starts it empty.
The same file handling serves the per-rank samples-rank<r>.jsonl trace. Split from the loop (model/train.py),
which imports these names from here.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger("model.train")  # the loop's logger: an eval loss is part of the loop's story


def metrics_file(path: Path, resume_step: int) -> Any:
    """metrics.jsonl opened for appending; lines past the resumed step (a crashed run's tail) are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume_step and path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if _step_of(ln) <= resume_step]
        path.write_text("".join(ln + "\n" for ln in keep))
    elif not resume_step:
        path.write_text("")
    return path.open("a")


def _step_of(line: str) -> float:
    """A metrics line's step; a line torn by a killed process (or blank) counts as past any resume point."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def log_eval(metrics: Any, step: int, value: float | None) -> list[float]:
    """Log and record an eval loss; returns [value] (or [] when the split is empty)."""
    if value is None:
        return []
    logger.info("step %d: eval loss %.4f", step, value)
    if metrics is not None:
        metrics.write(json.dumps({"step": step, "eval_loss": value}) + "\n")
        metrics.flush()
    return [value]


def plot_losses(metrics: Path, png: Path, *, title: str) -> Path:
    """Training loss (and eval loss when logged) against the step, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
