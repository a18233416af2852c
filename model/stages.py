"""The stages' bookkeeping around the loop: where a stage writes, what it continues from and what it returns.

Stage 2 continues stage 1's checkpoint (`inherit` loads it unless it is already in memory and returns the
record its checkpoints keep in inherits.json: the stage-1 checkpoint, its config, its data fingerprint and what
stage 2 overrides); a `--resume` must run the config the checkpoint was saved with (`check_resume`); a stage
returns a `StageResult` (its final checkpoint, its losses, whether it stopped at --stop-at). Split from the
loop (model/train.py), which imports these names from here and re-exports them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.checkpoint import CheckpointError, load_weights, read_json, read_meta
from model.config import StageConfig, TrainConfig
from model.tlm import FusarGPT

logger = logging.getLogger("model.train")  # the loop's logger: what stage 2 inherits is part of its story


@dataclass
class StageResult:
    final: Path
    steps: int
    first_loss: float
    last_loss: float
    losses: list[float] = field(default_factory=list)  # every step's training loss of this run
    eval_losses: list[float] = field(default_factory=list)  # every eval loss of this run, in order
    stopped: bool = False  # stopped at --stop-at: `final` is that step's checkpoint, the stage is not done

    @property
    def window(self) -> int:
        """Steps averaged at each end for the summary: a tenth of the run (batch losses are noisy)."""
        return max(1, len(self.losses) // 10)

    def summary(self) -> str:
        """'loss 5.26 -> 2.45 (mean of the first / last 5 steps), eval loss 3.26 -> 0.86'."""
        k = self.window
        text = "no step"
        if self.losses:
            head, tail = self.losses[:k], self.losses[-k:]
            text = f"loss {sum(head) / k:.4f} -> {sum(tail) / k:.4f} (mean of the first / last {k} steps)"
        if self.eval_losses:
            text += f", eval loss {self.eval_losses[0]:.4f} -> {self.eval_losses[-1]:.4f}"
        return text


def stage_dir(cfg: TrainConfig, name: str) -> Path:
    return Path(cfg.output_dir) / name


def inherit(cfg: TrainConfig, st: StageConfig, model: FusarGPT, *, loaded: bool) -> dict[str, Any]:
    """Stage 2's record of what it continues: the stage-1 checkpoint (loaded into `model` unless `loaded`),
    its config and data fingerprint, and what stage 2 overrides."""
    src = Path(st.init_from) if st.init_from else stage_dir(cfg, "stage1") / "final"
    if not src.is_dir():
        raise CheckpointError(
            f"stage 2 continues a stage-1 checkpoint but {src} does not exist; "
            "run --stage 1 first or set stage2.init_from"
        )
    if not loaded:
        load_weights(src, model)
    meta = read_meta(src)
    parent = meta["config"].get(meta["stage"], {}) or {}
    mine = st.model_dump(mode="json")
    overrides = {k: [parent.get(k), v] for k, v in mine.items() if parent.get(k) != v}
    logger.info(
        "stage2 inherits LoRA%s from %s (stage-1 step %s, data %s); overrides %s",
        " + TLM (frozen)" if model.tlm is not None else "",
        src,
        meta.get("step"),
        (meta.get("data_fingerprint") or {}).get("digest"),
        {k: f"{a} -> {b}" for k, (a, b) in overrides.items()},
    )
    return {
        "checkpoint": meta["path"],
        "stage": meta["stage"],
        "step": meta.get("step"),
        "config": meta["config"],
        "data_fingerprint": meta.get("data_fingerprint"),
        "overrides": overrides,
    }


def check_resume(cfg: TrainConfig, name: str, ckpt: Path) -> None:
    """A resume must run the same stage config (else 'exact' is meaningless): one line naming the fields."""
    saved = read_json(ckpt, "config.json")["config"]
    mine = cfg.model_dump(mode="json")
    diff = sorted(k for k in mine[name] if (saved.get(name) or {}).get(k) != mine[name][k])
    diff += sorted(
        k
        for k in ("base", "tlm", "lora", "image_size", "max_length", "seed", "group_by_length")
        if saved.get(k, 0 if k == "group_by_length" else None) != mine[k]  # older checkpoints: no grouping
    )
    if diff:
        raise CheckpointError(
            f"--resume {ckpt}: the config differs in {diff}; resume with the config it was saved with"
        )
