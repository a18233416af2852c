"""The contract between the dataset builder and the trainer: the Arrow schema of a triplet row and the
JSON schemas of the generated text and the fact sheet."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from schemas.triplet import (
    AEF_DIM,
    CAPTION_FIELDS,
    COLUMN_DOCS,
    QA_TASKS,
    SCHEMA_VERSION,
    SPLITS,
    metadata_schema,
    rejects_schema,
    triplet_schema,
)


@cache
def json_schema(name: str) -> dict[str, Any]:
    """Load one of the bundled JSON schemas: 'facts', 'caption' or 'qa'."""
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _compiled(name: str) -> Any:
    return fastjsonschema.compile(json_schema(name))


def _check(compiled: Any, name: str, instance: Any) -> None:
    try:
        compiled(instance)
    except fastjsonschema.JsonSchemaValueException as e:
        parts = [str(p) for p in (e.path or [])[1:]]
        path = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)
        message = e.message.removeprefix(f"{e.name} ") if e.name else e.message
        raise ValueError(f"{name} invalid at {path}: {message}") from None


def validate(name: str, instance: Any) -> None:
    """Validate against a bundled JSON schema (compiled once, ~10x faster than interpreting it); raise
    ValueError naming the first failing path, e.g. "facts invalid at $.surface.cells[3].water_fraction: ..."."""
    _check(_compiled(name), name, instance)


def validator(schema: dict[str, Any], name: str) -> Callable[[Any], None]:
    """A compiled validator of any JSON schema (e.g. a stage's fact section), raising ValueError as
    `validate` does, with `name` in place of the schema's name."""
    compiled = fastjsonschema.compile(schema)
    return lambda instance: _check(compiled, name, instance)


def facts_schema_with(sections: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The fact sheet's schema with the namespaced sections of extension stages composed in: each
    `sections[name]` becomes the schema of `$.ext.<name>`, and no other section may appear under `ext`.
    The core schema (schemas/facts.schema.json) is not edited: it only declares the `ext` extension point."""
    schema = copy.deepcopy(json_schema("facts"))
    ext = schema["properties"]["ext"]
    ext["properties"] = {name: copy.deepcopy(s) for name, s in sections.items()}
    ext["additionalProperties"] = False
    return schema


__all__ = [
    "AEF_DIM",
    "CAPTION_FIELDS",
    "COLUMN_DOCS",
    "QA_TASKS",
    "SCHEMA_VERSION",
    "SPLITS",
    "facts_schema_with",
    "json_schema",
    "metadata_schema",
    "rejects_schema",
    "triplet_schema",
    "validate",
    "validator",
]
