"""The training configuration (one YAML file, validated with pydantic): the base, the TLM, LoRA, and the two
stages of FUSAR-GPT's decoupled SFT.

Both stages run the SAME loop (model/train.py); they differ only by their `StageConfig`: which data (captions
or QA tasks), which parameter groups train (stage 1: LoRA + TLM; stage 2: LoRA only, TLM frozen), the
schedule. Errors are one line naming the field, e.g.
`model/configs/tiny.yaml: stage1.lr: Input should be greater than 0 (got -1)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas import QA_TASKS

STAGE_NAMES = ("stage1", "stage2")
GROUPS = ("lora", "tlm")


class _Model(BaseModel):
    """Unknown keys are errors: a typo in a config must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TLMSection(_Model):
    """The TLM (model/tlm.py TLMConfig); enabled=false trains the no-AlphaEarth baseline."""

    enabled: bool = True
    sigma: float = Field(2.0, gt=0)
    hidden_mult: int = Field(4, ge=1)
    identity_init: bool = False
    patch_centres: bool = True  # false: anchors at y * (h - 1) against patch indices, as the release
    # the release's exact maths (its tlm_config.json format); implies its placement whatever patch_centres says
    release: bool = False


class LoRASection(_Model):
    """peft LoRA on the language model only (the paper: r 8, alpha 32, dropout 0.05, all linear layers)."""

    r: int = Field(8, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class StageConfig(_Model):
    """One SFT stage: its data, what trains, its schedule, and how often it evaluates and saves."""

    data: Literal["caption", "qa"]
    tasks: tuple[str, ...] | None = Field(None, description="QA tasks of stage 'qa' (None = all of them)")
    split: str = "train"
    eval_split: str | None = "validation"
    train: tuple[Literal["lora", "tlm"], ...] = Field(..., min_length=1)
    epochs: int | None = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs when set")
    lr: float = Field(..., gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine decays to lr * min_lr_ratio")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = Field(1, ge=1, description="per device")
    grad_accum: int = Field(1, ge=1)
    grad_clip: float | None = Field(1.0, gt=0)
    shuffle_buffer: int = Field(256, ge=0)
    eval_every: int = Field(0, ge=0, description="steps between validation losses (0 = only at the end)")
    eval_batches: int = Field(8, ge=1)
    save_every: int = Field(0, ge=0, description="steps between checkpoints (0 = only at the end)")
    log_every: int = Field(1, ge=1)
    init_from: str | None = Field(
        None,
        description="stage 2 only: the stage-1 checkpoint to continue (default: <output_dir>/stage1/final)",
    )

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if self.data == "caption" and self.tasks is not None:
            raise ValueError("tasks apply to data 'qa' only; drop tasks for data 'caption'")
        bad = [t for t in self.tasks or () if t not in QA_TASKS]
        if bad:
            raise ValueError(f"unknown task(s) {bad}; choose from {list(QA_TASKS)}")
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set epochs or max_steps")
        if len(set(self.train)) != len(self.train):
            raise ValueError(f"train lists a group twice: {list(self.train)}")
        return self


class TrainConfig(_Model):
    """The whole run: the model, the data, the runtime, and the stages (run in order stage1, stage2)."""

    base: str = Field(
        "tiny", description="'tiny' / 'tiny:qwen3_vl' (built in code), a hub id or a local folder"
    )
    tlm: TLMSection = TLMSection()
    lora: LoRASection = LoRASection()
    image_size: int = Field(504, ge=28, description="square side in pixels (a multiple of 28)")
    max_length: int = Field(2048, ge=16)
    data: str | None = Field(None, description="shard folder / glob (or --data); relative to the working dir")
    output_dir: str = "out/train"
    seed: int = 0
    bf16: bool = Field(True, description="bf16 autocast on GPU (CPU always runs fp32)")
    gradient_checkpointing: bool = False
    attn_implementation: str | None = Field(
        None, description="None: flash_attention_2 on CUDA when flash_attn is installed, else sdpa"
    )
    ce_chunk: int = Field(
        0,
        ge=0,
        description="tokens per chunk of the fused cross-entropy (model/fused_ce.py); 0 = whole logits",
    )
    compile: bool = Field(False, description="torch.compile each decoder layer of the LLM (regional)")
    group_by_length: int = Field(
        0, ge=0, description="batches per length group (0 = off): sort that many batches of samples by length"
    )
    distributed: Literal["ddp", "fsdp"] = "ddp"
    log_samples: bool = Field(
        False, description="write <stage>/samples-rank<r>.jsonl: the sample ids of every step, per rank"
    )
    stage1: StageConfig | None = None
    stage2: StageConfig | None = None

    @field_validator("image_size")
    @classmethod
    def _multiple_of_28(cls, v: int) -> int:
        if v % 28:
            raise ValueError(
                f"must be a multiple of 28 (patch 14 x merge 2), e.g. {round(v / 28) * 28 or 28}"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.stage1 is None and self.stage2 is None:
            raise ValueError("define stage1 and/or stage2")
        for name in STAGE_NAMES:
            st: StageConfig | None = getattr(self, name)
            if st is not None and "tlm" in st.train and not self.tlm.enabled:
                raise ValueError(f"{name}.train lists 'tlm' but tlm.enabled is false")
        if self.stage1 is not None and self.stage1.init_from is not None:
            raise ValueError("stage1.init_from is not supported; only stage 2 continues a checkpoint")
        return self

    def stage(self, name: str) -> StageConfig:
        """The named stage's config; a one-line error if the file does not define it."""
        st: StageConfig | None = getattr(self, name, None) if name in STAGE_NAMES else None
        if st is None:
            raise ValueError(f"the config defines no {name}; add a `{name}:` section or pick another --stage")
        return st

    @property
    def tiny_family(self) -> str | None:
        """The family of a built-in tiny base ('tiny' = qwen2_5_vl), None for a real checkpoint."""
        if self.base == "tiny":
            return "qwen2_5_vl"
        if self.base.startswith("tiny:"):
            return self.base.split(":", 1)[1]
        return None


def _format_errors(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        tail = (
            f" (got {got!r})"
            if e["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict)
            else ""
        )
        parts.append(f"{loc}: {msg}{tail}")
    return f"{source}: " + "; ".join(parts)


def parse_config(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a config mapping; raise ValueError with every problem in one line naming the fields."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ValueError(_format_errors(source, e)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML config; `overrides` (e.g. {"data": DIR}) replace top-level keys."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config {p} does not exist; pass --config model/configs/<name>.yaml")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: the top level must be a mapping of config keys")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return parse_config(raw, str(p))


__all__ = [
    "GROUPS",
    "STAGE_NAMES",
    "LoRASection",
    "StageConfig",
    "TLMSection",
    "TrainConfig",
    "load_config",
    "parse_config",
]
