"""The text of each chip, as the region file declares it: the writer (offline or an LLM), the LLM server
and its prompt, and which task QA a chip gets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from triplet_builder.config.base import _Model

# the package's logger: its warnings keep the name `triplet_builder.config`
log = logging.getLogger("triplet_builder.config")


class LlmConfig(_Model):
    """An OpenAI or OpenAI-compatible server (vLLM, Ollama, llama.cpp). The key is read from the named
    environment variable and never written anywhere."""

    model: str = Field(
        description="Model id as the server knows it, e.g. gpt-4o-mini or Qwen/Qwen2.5-7B-Instruct."
    )
    base_url: str | None = Field(
        None, description="Server root, e.g. http://localhost:8000/v1; default: $OPENAI_BASE_URL or OpenAI."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key.")
    vision: bool = Field(False, description="Also send the chip image (vision models only).")
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16)
    max_concurrent: int = Field(8, ge=1, le=256, description="Requests in flight per worker process.")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20, description="Retries on 429 / 5xx / timeouts / invalid JSON.")
    backoff_s: float = Field(1.0, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    prompt: str = Field(
        "fusar_geovl_v1.yaml",
        description="Prompt file of triplet_builder/text/prompts/ (a new prompt version is a new file).",
    )
    repair_attempts: int = Field(
        1,
        ge=0,
        le=5,
        description="Re-asks, with the checker's findings, when the text contradicts the facts.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_exists(cls, v: str) -> str:
        folder = Path(__file__).parents[1] / "text" / "prompts"
        if not (folder / v).is_file():
            have = sorted(p.name for p in folder.glob("*.yaml"))
            raise ValueError(f"prompt {v!r} is not in triplet_builder/text/prompts/ (have {have})")
        return v


QaTask = Literal["counting", "localization", "detection", "classification", "land_cover", "scene_type"]
QA_TASK_KINDS: tuple[QaTask, ...] = get_args(QaTask)


class QaConfig(_Model):
    """Which task QA a chip gets (text/qa.py). tasks: counting / localization / detection of every class
    the facts count (labelled objects, CFAR bright point targets, countable OSM features), classification
    of a labelled object's box, `land_cover` (the dominant class of the chip and of a cell, from
    ext.land_cover) and `scene_type` (the derived functionality). Negatives (a class asked about with
    answer 0 / None) are taken from the facts only: absent classes of labels.classes_labelled, absent
    features of ext.osm.queried; negatives_ratio: negative classes per positive class (rounded up,
    seeded choice); max_per_chip: the most QA items of a chip (a seeded sample keeps the task mix)."""

    tasks: list[QaTask] = Field(default_factory=lambda: list(QA_TASK_KINDS), min_length=1)
    negatives_ratio: float = Field(1.0, ge=0, le=10)
    max_per_chip: int = Field(24, ge=1, le=200)


class TextConfig(_Model):
    writer: Literal["offline", "llm"] = "offline"
    qa: QaConfig = Field(default_factory=QaConfig)
    negative_classes: list[str] | None = Field(
        None,
        description="DEPRECATED, ignored: negatives now come from the facts (labels.classes_labelled, "
        "ext.osm.queried, the CFAR detections); see text.qa.negatives_ratio.",
    )
    llm: LlmConfig | None = None

    @model_validator(mode="after")
    def _deprecated(self) -> TextConfig:
        if self.negative_classes is not None:
            log.warning(
                "text.negative_classes is deprecated and ignored: negative QA now asks only about classes "
                "the facts list as looked for (labels.classes_labelled, ext.osm.queried, CFAR detections); "
                "remove it and set text.qa.negatives_ratio instead"
            )
        return self

    @model_validator(mode="after")
    def _llm(self) -> TextConfig:
        if self.writer == "llm" and self.llm is None:
            raise ValueError("text.writer llm needs a text.llm block (model, base_url, ...)")
        return self
