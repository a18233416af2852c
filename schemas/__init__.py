"""The contract between the dataset builder and the trainer: the Arrow schema of a triplet row and the
JSON schemas of the generated text and the fact sheet."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from schemas.triplet import (
    AEF_DIM,
    CAPTION_FIELDS,
    COLUMN_DOCS,
    QA_TASKS,
    SCHEMA_VERSION,
    SPLITS,
    rejects_schema,
    triplet_schema,
)


@cache
def json_schema(name: str) -> dict[str, Any]:
    """Load one of the bundled JSON schemas: 'facts', 'caption' or 'qa'."""
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


__all__ = [
    "AEF_DIM",
    "CAPTION_FIELDS",
    "COLUMN_DOCS",
    "QA_TASKS",
    "SCHEMA_VERSION",
    "SPLITS",
    "json_schema",
    "rejects_schema",
    "triplet_schema",
]
