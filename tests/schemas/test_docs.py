"""The schema is documented: every column has a description in the schema and a row in the README."""

from __future__ import annotations

from schemas import COLUMN_DOCS, json_schema, rejects_schema, triplet_schema
from tests.conftest import ROOT


def test_every_column_is_documented_in_schema_and_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in triplet_schema():
        assert field.metadata and field.metadata[b"description"], field.name
        assert f"| `{field.name}` |" in readme, f"README lacks column {field.name}"
    assert set(COLUMN_DOCS) == set(triplet_schema().names)
    assert all(f.metadata for f in rejects_schema())


def test_json_schemas_load() -> None:
    for name in ("facts", "caption", "qa"):
        assert json_schema(name)["$schema"].startswith("https://json-schema.org/")
