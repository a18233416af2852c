"""`triplet-builder train | eval | predict`: the trainer's own command lines (model/train.py,
model/eval/__main__.py, model/predict.py), reached from the one CLI.

The trainer needs torch and the `[train]` extra; the pipeline does not. So nothing here imports the model
package until one of these commands runs, and without its packages the command ends in one line naming
the extra to install. Each stays a module of its own (`python -m model.train ...`): this is a dispatch,
with the same arguments and help.
"""

from __future__ import annotations

import importlib
import sys

MODULES = {"train": "model.train", "eval": "model.eval.__main__", "predict": "model.predict"}
HELP = {
    "train": "train FUSAR-GPT on built shards: stage 1 then stage 2 (needs the [train] extra)",
    "eval": "score a checkpoint with the paper's metrics (needs the [train] extra)",
    "predict": "ask a trained checkpoint one question about one image (needs the [train] extra)",
}
EXTRA = "pip install 'sar-triplets[train]'"  # pyproject.toml [project.optional-dependencies] train
TRAIN_PACKAGES = ("torch", "transformers", "peft", "safetensors", "matplotlib", "sacrebleu", "rouge_score")


def missing_extra(command: str) -> str | None:
    """The one-line error when a package of the [train] extra cannot be imported, else None."""
    for name in TRAIN_PACKAGES[:1]:  # torch first: the others are imported where they are used
        try:
            importlib.import_module(name)
        except ImportError:
            return f"triplet-builder {command} needs {name}: install the trainer extra: {EXTRA}"
    return None


def run_model_command(command: str, argv: list[str]) -> int:
    """Run `command`'s main with `argv` (everything after the command on the line); its exit code."""
    problem = missing_extra(command)
    if problem is None:
        try:
            module = importlib.import_module(MODULES[command])
        except ImportError as e:
            if (e.name or "").split(".")[0] not in TRAIN_PACKAGES:
                raise
            problem = f"triplet-builder {command} needs {e.name}: install the trainer extra: {EXTRA}"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


__all__ = ["HELP", "MODULES", "run_model_command"]
