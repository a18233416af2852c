"""The text-writer protocol shared by the offline writer and the (later) LLM writer, and the helpers
every writer uses: render the caption from its fields, validate fields and QA against the JSON schemas
(schemas/caption.schema.json, schemas/qa.schema.json) and turn caption + QA into one chat.

A writer maps a chip's fact sheet (schemas/facts.schema.json) to a `TextResult`; it must be
deterministic for a given chip id and say nothing the facts do not (see text/consistency.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from schemas import CAPTION_FIELDS, validate

DESCRIBE_INSTRUCTION = (
    "Describe this SAR image: where it was taken, its terrain, how land and water are laid out, "
    "the strong scatterers and the targets it contains."
)


@dataclass
class TextResult:
    """The text of one chip: the caption field by field (None = the facts say nothing), the rendered
    caption, and the task QA ({task, question, answer} dicts)."""

    caption_fields: dict[str, str | None]
    caption: str
    qa: list[dict[str, str]]


@runtime_checkable
class TextWriter(Protocol):
    """Anything that writes a chip's text from its fact sheet.

    name: the generator id stored with every row (e.g. "offline/1.0" or an LLM model id).
    prompt_version: the version of the template / prompt set.
    """

    name: str
    prompt_version: str

    def write(self, facts: dict[str, Any], chip_id: str) -> TextResult: ...


def render_caption(fields: Mapping[str, str | None]) -> str:
    """The caption: the non-null, non-empty fields in CAPTION_FIELDS order, joined by spaces."""
    parts = [(fields.get(name) or "").strip() for name in CAPTION_FIELDS]
    return " ".join(p for p in parts if p)


def validate_text(fields: Mapping[str, str | None], qa: Sequence[Mapping[str, Any]]) -> None:
    """Validate caption fields and QA against their JSON schemas; raise ValueError naming the path of
    the first error (e.g. "caption invalid at $.targets: 5 is not of type 'string', 'null'")."""
    validate("caption", dict(fields))
    validate("qa", [dict(q) for q in qa])


def build_messages(
    caption: str, qa: Sequence[Mapping[str, str]], instruction: str = DESCRIBE_INSTRUCTION
) -> list[dict[str, str]]:
    """The caption and the QA as one chat (role/content): a user turn asking to describe the SAR image
    (no image placeholder: the trainer's chat template inserts the image), the caption as the
    assistant's answer, then every QA as a user / assistant pair."""
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": caption}]
    for item in qa:
        messages.append({"role": "user", "content": item["question"]})
        messages.append({"role": "assistant", "content": item["answer"]})
    return messages


__all__ = [
    "DESCRIBE_INSTRUCTION",
    "TextResult",
    "TextWriter",
    "build_messages",
    "render_caption",
    "validate_text",
]
