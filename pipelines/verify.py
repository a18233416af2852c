"""`triplet-builder verify OUTPUT`: check a build folder against its own manifest and the row schema before
it is trained on or published.

Checked: every shard's Arrow schema equals schemas.triplet's (names, types, nullability) and states the
schema version; GeoParquet metadata names the WKB `geometry` column in OGC:CRS84 with the `bbox` covering;
chip ids are unique over the shards and never also in the rejects; every file under data/ and rejects/
is listed in the manifest and every listed file exists; metadata.parquet indexes exactly the kept chips; each row's split matches its shard's name; the
rows per split and the kept / rejected counts equal the manifest's; the card's `configs` name the splits
that have rows, and each `data_files` pattern matches files. Each problem is one line; none means the
folder is what its manifest says.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from schemas import SCHEMA_VERSION, rejects_schema, triplet_schema


def _card_configs(card: Path) -> list[dict[str, Any]] | None:
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return None
    front = text[4 : text.find("\n---", 4)]
    meta = yaml.safe_load(front) or {}
    configs = meta.get("configs")
    return configs if isinstance(configs, list) else None


def _check_geo(path: str, md: dict[bytes, bytes]) -> list[str]:
    raw = md.get(b"geo")
    if raw is None:
        return [f"{path}: no GeoParquet 'geo' metadata"]
    geo = json.loads(raw)
    col = geo.get("columns", {}).get(geo.get("primary_column", ""), {})
    problems = []
    if geo.get("primary_column") != "geometry" or col.get("encoding") != "WKB":
        problems.append(f"{path}: GeoParquet primary column must be 'geometry' encoded WKB")
    crs_id = (col.get("crs") or {}).get("id", {})
    if (crs_id.get("authority"), str(crs_id.get("code"))) != ("OGC", "CRS84"):
        problems.append(f"{path}: GeoParquet geometry CRS is not OGC:CRS84")
    if "bbox" not in col.get("covering", {}):
        problems.append(f"{path}: GeoParquet metadata has no bbox covering")
    return problems


def _schema_problems(path: str, schema: Any, expected: Any) -> list[str]:
    got = {f.name: f for f in schema}
    problems = []
    for f in expected:
        g = got.get(f.name)
        if g is None:
            problems.append(f"{path}: column {f.name} is missing")
        elif g.type != f.type or g.nullable != f.nullable:
            problems.append(f"{path}: column {f.name} is {g.type} (nullable {g.nullable}), expected {f.type}")
    extra = sorted(set(got) - {f.name for f in expected})
    if extra:
        problems.append(f"{path}: columns not in the schema: {extra}")
    return problems


def verify(output_dir: str | Path) -> list[str]:
    """The problems of a build folder (empty: it is what its manifest says)."""
    out = Path(output_dir)
    mpath = out / "manifest.json"
    if not mpath.is_file():
        return [f"{out}: no manifest.json (the build did not finish, or this is not a build folder)"]
    m = json.loads(mpath.read_text())
    problems: list[str] = []
    listed = set(m.get("files", [])) | set(m.get("rejects_files", []))
    on_disk = {str(p.relative_to(out)) for sub in ("data", "rejects") for p in (out / sub).glob("*.parquet")}
    indexed = on_disk | ({m["metadata"]["file"]} if m.get("metadata") else set())
    problems += [f"{f}: on disk but not in the manifest (a stray shard)" for f in sorted(on_disk - listed)]
    problems += [f"{f}: listed in the manifest but missing" for f in sorted(listed - on_disk)]

    expected = triplet_schema()
    ids: Counter[str] = Counter()
    per_split: Counter[str] = Counter()
    for f in sorted(x for x in m.get("files", []) if x in on_disk):
        pf = pq.ParquetFile(out / f)
        schema = pf.schema_arrow
        problems += _schema_problems(f, schema, expected)
        md = schema.metadata or {}
        version = md.get(b"triplet_schema_version", b"").decode()
        if version != SCHEMA_VERSION:
            problems.append(
                f"{f}: schema version {version or 'missing'}, this verifier reads {SCHEMA_VERSION}"
            )
        problems += _check_geo(f, md)
        t = pf.read(columns=["chip_id", "split"])
        name_split = Path(f).name.split("-", 1)[0]
        for cid, split in zip(t.column("chip_id").to_pylist(), t.column("split").to_pylist(), strict=True):
            ids[cid] += 1
            per_split[split] += 1
            if split != name_split:
                problems.append(f"{f}: chip {cid} is in split {split} but the shard is named {name_split}")
    problems += [f"chip id {c} appears {n} times in the shards" for c, n in sorted(ids.items()) if n > 1]

    rejected = 0
    for f in sorted(x for x in m.get("rejects_files", []) if x in on_disk):
        pf = pq.ParquetFile(out / f)
        problems += _schema_problems(f, pf.schema_arrow, rejects_schema())
        rids = pf.read(columns=["chip_id"]).column("chip_id").to_pylist()
        rejected += len(rids)
        problems += [f"{f}: chip {c} is both kept and rejected" for c in rids if c in ids]

    counts = m.get("counts", {})
    if dict(per_split) != {k: v for k, v in counts.get("rows_per_split", {}).items() if v}:
        problems.append(
            f"rows per split {dict(per_split)} differ from the manifest's {counts.get('rows_per_split')}"
        )
    if sum(per_split.values()) != counts.get("chips_kept"):
        problems.append(
            f"{sum(per_split.values())} rows in the shards, the manifest says {counts.get('chips_kept')} kept"
        )
    if rejected != counts.get("chips_rejected"):
        problems.append(
            f"{rejected} rows in the rejects, the manifest says {counts.get('chips_rejected')} rejected"
        )

    meta = m.get("metadata")
    if meta is not None:
        mp = out / meta["file"]
        if not mp.is_file():
            problems.append(f"{meta['file']}: listed in the manifest but missing")
        else:
            t = pq.read_table(mp, columns=["chip_id", "file", "row"])
            if sorted(t.column("chip_id").to_pylist()) != sorted(ids):
                problems.append(f"{meta['file']}: its chip ids differ from the shards'")
            problems += _check_geo(meta["file"], pq.ParquetFile(mp).schema_arrow.metadata or {})

    configs = _card_configs(out / "README.md")
    if configs is None:
        problems.append("README.md: no dataset card with `configs` in its YAML front matter")
    else:
        default = next((c for c in configs if c.get("config_name") == "default"), None)
        named = {d["split"] for d in (default or {}).get("data_files", []) if isinstance(d, dict)}
        if named != set(per_split):
            problems.append(
                f"README.md: the default config names splits {sorted(named)}, the shards hold {sorted(per_split)}"
            )
        for c in configs:
            data_files = c.get("data_files", [])
            for d in [data_files] if isinstance(data_files, str) else data_files:
                pattern = d["path"] if isinstance(d, dict) else d
                if not any(fnmatch.fnmatch(f, pattern) for f in indexed if (out / f).is_file()):
                    problems.append(
                        f"README.md: config {c.get('config_name')} pattern {pattern} matches no file"
                    )
    return problems
