"""The dataset card's metadata (its YAML front matter), built with huggingface_hub's `DatasetCardData`
from the manifest: configs with their data files, features, licences chosen from the inputs, creators,
sources, size category, citations, and the build command with its config hash.

Why the hub's own class: it writes the keys the hub validates (`license`, `configs`, `dataset_info`, ...)
in the form the hub expects, so the card is checked by the same code that reads it.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
from huggingface_hub import DatasetCardData

from schemas import triplet_schema

DEFAULT_PRETTY_NAME = "SAR chip / text / AlphaEarth embedding triplets"
TASK_CATEGORIES = ["image-to-text", "visual-question-answering"]
TAGS = ["sar", "sentinel-1", "remote-sensing", "alphaearth", "geoparquet"]

# BibTeX of the works every card cites, and of OpenStreetMap when its data was used. Only what the
# project's references state (title, identifier, venue); no author list where they name none.
CITATIONS = {
    "fusar-gpt": (
        "@article{fusargpt2026,\n"
        "  title = {FUSAR-GPT: A Spatiotemporal Feature-Embedded and Two-Stage Decoupled Visual Language "
        "Model for SAR Imagery},\n"
        "  journal = {arXiv preprint arXiv:2602.19190},\n  year = {2026}\n}"
    ),
    "alphaearth": (
        "@article{brown2025alphaearth,\n"
        "  title = {AlphaEarth Foundations: An embedding field model for accurate and efficient global "
        "mapping from sparse label data},\n"
        "  author = {Brown, Christopher F. and others},\n"
        "  journal = {arXiv preprint arXiv:2507.22291},\n  year = {2025}\n}"
    ),
    "majortom": (
        "@inproceedings{francis2024majortom,\n"
        "  title = {Major TOM: Expandable Datasets for Earth Observation},\n"
        "  author = {Francis, Alistair and Czerkawski, Mikolaj},\n"
        "  booktitle = {IGARSS 2024 - IEEE International Geoscience and Remote Sensing Symposium},\n"
        "  year = {2024}\n}"
    ),
    "OpenStreetMap": (
        "@misc{openstreetmap,\n"
        "  title = {Planet dump retrieved from https://planet.osm.org},\n"
        "  author = {{OpenStreetMap contributors}},\n"
        "  howpublished = {https://www.openstreetmap.org}\n}"
    ),
}


def size_category(n: int) -> str:
    """The hub's size bucket of n rows."""
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "10M<n<100M"


def _dtype(t: pa.DataType) -> Any:
    """One Arrow type in the hub's `dataset_info.features` notation (what `datasets` writes)."""
    if pa.types.is_struct(t):
        return {"struct": [_feature(t.field(i)) for i in range(t.num_fields)]}
    if pa.types.is_fixed_size_list(t):
        return {"list": _inner(t.value_type), "length": t.list_size}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"list": _inner(t.value_type)}
    names = {pa.float32(): "float32", pa.float64(): "float64", pa.binary(): "binary", pa.string(): "string"}
    return {"dtype": names.get(t, str(t))}


def _inner(t: pa.DataType) -> Any:
    d = _dtype(t)
    return d["dtype"] if "dtype" in d else (d["struct"] if set(d) == {"struct"} else d)


def _feature(f: pa.Field) -> dict[str, Any]:
    return {"name": f.name, **_dtype(f.type)}


def features(schema: pa.Schema | None = None) -> list[dict[str, Any]]:
    """The row schema (schemas.triplet) as hub features, column by column."""
    return [_feature(f) for f in (schema if schema is not None else triplet_schema())]


def configs(manifest: dict[str, Any], splits: list[str]) -> list[dict[str, Any]]:
    """default (the shards, by split), plus `metadata` (the image-free index) and `rejects` when written."""
    out: list[dict[str, Any]] = [
        {
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits],
            "default": True,
        }
    ]
    if manifest.get("metadata"):
        out.append({"config_name": "metadata", "data_files": manifest["metadata"]["file"]})
    if manifest.get("rejects_files"):
        out.append({"config_name": "rejects", "data_files": "rejects/*.parquet"})
    return out


def source_datasets(manifest: dict[str, Any]) -> list[str]:
    """The hub's `source_datasets`: `original` plus a name per input the licences list."""
    inputs = [str(e.get("input")) for e in manifest.get("licence_inputs") or [] if isinstance(e, dict)]
    return ["original", *(f"extended|{i}" for i in dict.fromkeys(inputs))]


def citations(manifest: dict[str, Any]) -> list[str]:
    """FUSAR-GPT, AlphaEarth Foundations and Major TOM always (BibTeX); WorldCover (the citation of each
    map year used, from the attribution lines) and OpenStreetMap when their data was used."""
    inputs = {str(e.get("input")) for e in manifest.get("licence_inputs") or [] if isinstance(e, dict)}
    out = [CITATIONS[k] for k in ("fusar-gpt", "alphaearth", "majortom")]
    for line in manifest.get("attributions") or []:
        if str(line).startswith("© ESA WorldCover") and "; " in str(line):
            out.append(str(line).rsplit("; ", 1)[1].rstrip(")"))
    if "OpenStreetMap" in inputs:
        out.append(CITATIONS["OpenStreetMap"])
    return out


def build_command(manifest: dict[str, Any]) -> str:
    """The command that rebuilds this dataset (the region file as the build named it, relative)."""
    return f"triplet-builder build {manifest.get('region_file') or 'REGION.yaml'}"


def card_data(manifest: dict[str, Any], splits: list[str]) -> DatasetCardData:
    """The card's metadata. `license` holds the hub ids of the inputs' licences; an `other` licence gets
    the name and link of the first input that has it."""
    licenses = [str(x) for x in manifest.get("licenses") or []] or ["unknown"]
    total = sum(int(n) for n in (manifest.get("rows") or {}).values())
    other = next(
        (
            e
            for e in manifest.get("licence_inputs") or []
            if isinstance(e, dict) and e.get("license") == "other"
        ),
        None,
    )
    extra: dict[str, Any] = {}
    if other is not None:
        # the hub wants an id-like name for an `other` licence (e.g. copernicus-sentinel-data-terms)
        slug = re.sub(r"[^a-z0-9]+", "-", str(other.get("name")).lower()).strip("-")
        extra = {"license_name": slug, "license_link": str(other.get("link"))}
    rows = manifest.get("rows") or {}
    return DatasetCardData(
        license=licenses[0] if len(licenses) == 1 else licenses,
        pretty_name=manifest.get("pretty_name") or DEFAULT_PRETTY_NAME,
        language=["en"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(total)],
        source_datasets=source_datasets(manifest),
        tags=TAGS,
        configs=configs(manifest, splits),
        dataset_info={
            "config_name": "default",
            "features": features(),
            "splits": [{"name": s, "num_examples": int(rows.get(s, 0))} for s in splits],
        },
        **extra,
    )
