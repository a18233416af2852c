"""ShardWriter: schema, GeoParquet metadata, readers (pyarrow, geopandas, datasets), determinism, crashes."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from PIL import Image
from pyproj import CRS

from schemas import CAPTION_FIELDS, rejects_schema, triplet_schema
from schemas.codec import decode_chip
from triplet_builder.record import ChipRecord
from triplet_builder.writers.parquet import ShardWriter, ShardWriterError, build_messages

from .records import make_record, make_records, make_rejects

TASK = 7


def _write(
    out: Path, records: list[ChipRecord], rejects: Sequence[ChipRecord] = (), **kw: Any
) -> dict[str, Any]:
    with ShardWriter(out, TASK, config_hash="0123456789abcdef", pipeline_version="0.1.0", **kw) as w:
        for r in records:
            w.write(r)
        for r in rejects:
            w.reject(r)
        return w.close()


@pytest.fixture(scope="module")
def records() -> list[ChipRecord]:
    return make_records(20)


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, records: list[ChipRecord]
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shards")
    return out, _write(out, records, make_rejects(3))


def _assert_schema_matches(actual: pa.Schema, expected: pa.Schema) -> None:
    """Types, nullability, order and field metadata equal. Parquet names list children 'element'
    (the spec's name) where Arrow says 'item'; Arrow type equality ignores that name."""
    assert actual.equals(expected, check_metadata=False)
    for a, e in zip(actual, expected, strict=True):
        assert (a.name, a.nullable, a.metadata) == (e.name, e.nullable, e.metadata)
    assert expected.metadata is not None and actual.metadata is not None
    assert expected.metadata.items() <= actual.metadata.items()


def test_summary_and_layout(written: tuple[Path, dict[str, Any]]) -> None:
    out, summary = written
    assert summary["files"] == [
        "data/train-00007-000.parquet",
        "data/validation-00007-000.parquet",
        "rejects/rejects-00007.parquet",
    ]
    assert summary["rows"] == {"train": 11, "validation": 9}
    assert summary["rejects"] == 3
    assert summary["bytes"] == sum((out / f).stat().st_size for f in summary["files"])
    assert not list(out.rglob("*.tmp"))


def test_pyarrow_schema_rows_and_values(
    written: tuple[Path, dict[str, Any]], records: list[ChipRecord]
) -> None:
    out, _ = written
    path = out / "data" / "train-00007-000.parquet"
    _assert_schema_matches(pq.read_schema(path), triplet_schema())
    table = pq.read_table(path)
    assert table.num_rows == 11
    rows = table.to_pylist()
    by_id = {r.chip_id: r for r in records}
    for row in rows:
        rec = by_id[row["chip_id"]]
        assert (
            rec.db is not None
            and rec.valid is not None
            and rec.anchors is not None
            and rec.georef is not None
        )
        assert row["split"] == "train"
        assert (row["width"], row["height"]) == (32, 32)
        assert row["channels"] == (["VV", "VH", "VV-VH"] if len(rec.scene.bands) == 2 else ["VV"])
        assert row["valid_fraction"] == pytest.approx(rec.valid.mean())
        assert row["acquired"] == rec.scene.acquired
        assert json.loads(row["facts"]) == rec.facts
        assert set(row["caption_fields"]) == set(CAPTION_FIELDS)
        assert row["caption_fields"]["roads"] is None
        assert row["messages"] == build_messages(rec)
        assert row["messages"][1] == {"role": "assistant", "content": rec.caption}
        assert row["aef_grid"] == 4 and row["aef_synthetic"] is False
        np.testing.assert_array_equal(np.array(row["aef_codes"], dtype=np.int8), rec.anchors.codes)
        np.testing.assert_array_equal(row["aef_valid"], rec.anchors.valid)
        np.testing.assert_array_equal(np.array(row["aef_positions"], np.float32), rec.anchors.positions)
        assert shapely.from_wkb(row["geometry"]).equals(shapely.from_wkb(rec.georef.footprint_wkb))
        decoded = decode_chip(row["image"]["bytes"], row["stretch_min_db"], row["stretch_max_db"])
        np.testing.assert_array_equal(np.isnan(decoded[0]), ~rec.valid)
        err = np.nanmax(np.abs(decoded - np.clip(rec.db, -25, 5)))
        assert err <= 30 / 255 / 2 + 1e-5
    assert pq.ParquetFile(path).metadata.row_group(0).num_rows == 11


def test_geoparquet_metadata(written: tuple[Path, dict[str, Any]], records: list[ChipRecord]) -> None:
    out, _ = written
    path = out / "data" / "validation-00007-000.parquet"
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
    assert CRS.from_json_dict(col["crs"]) == CRS("OGC:CRS84")
    assert col["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert "bbox" not in col  # optional in GeoParquet 1.1; the covering column carries the boxes
    boxes = np.array([r.georef.bbox for r in records if r.split == "validation" and r.georef is not None])
    t = pq.read_table(path, columns=["bbox"]).column("bbox").to_pylist()
    np.testing.assert_allclose([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in t], boxes)
    # row-group statistics of every bbox leaf let readers skip by box: min / max of the row group's boxes
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 1
    rg = meta.row_group(0)
    leaves = {rg.column(j).path_in_schema: rg.column(j) for j in range(rg.num_columns)}
    for i, name in enumerate(("xmin", "ymin", "xmax", "ymax")):
        leaf = leaves[f"bbox.{name}"]
        assert leaf.is_stats_set and leaf.statistics.has_min_max, name
        assert (leaf.statistics.min, leaf.statistics.max) == (boxes[:, i].min(), boxes[:, i].max()), name


def test_geopandas_reads_footprints(written: tuple[Path, dict[str, Any]], records: list[ChipRecord]) -> None:
    out, _ = written
    gdf = gpd.read_parquet(out / "data" / "train-00007-000.parquet")
    assert gdf.crs is not None and gdf.crs.equals(CRS("EPSG:4326"), ignore_axis_order=True)
    by_id = {r.chip_id: r for r in records}
    for chip_id, geom in zip(gdf["chip_id"], gdf.geometry, strict=True):
        georef = by_id[chip_id].georef
        assert georef is not None and geom.equals(shapely.from_wkb(georef.footprint_wkb))


def test_rejects_table(written: tuple[Path, dict[str, Any]]) -> None:
    out, _ = written
    path = out / "rejects" / "rejects-00007.parquet"
    _assert_schema_matches(pq.read_schema(path), rejects_schema())
    rows = pq.read_table(path).to_pylist()
    assert [r["reason"] for r in rows] == ["nodata", "inconsistent_text", "inconsistent_text"]
    assert rows[0]["geometry"] is None and rows[1]["geometry"] is not None
    assert {r["task_id"] for r in rows} == {TASK}
    assert b"geo" in pq.read_schema(path).metadata  # two rejects have a footprint


def test_rejects_without_geometry_read_as_null_geometries(tmp_path: Path) -> None:
    _write(tmp_path, [], make_rejects(1))
    gdf = gpd.read_parquet(tmp_path / "rejects" / "rejects-00007.parquet")
    assert len(gdf) == 1 and gdf.geometry.isna().all()


def test_a_non_polygon_footprint_is_a_named_error(tmp_path: Path) -> None:
    rec = make_record(0, "train")
    assert rec.georef is not None
    rec.georef.footprint_wkb = shapely.to_wkb(shapely.Point(4.8, 43.4))
    w = ShardWriter(tmp_path, 1, config_hash="x", pipeline_version="0")
    with pytest.raises(ShardWriterError, match="not a 2-D Polygon"):
        w.write(rec)
    w.abort()
    assert not list(tmp_path.rglob("*.parquet"))


def _load_train(out: Path) -> Any:
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset(
        "parquet",
        data_files={"train": str(out / "data" / "train-*.parquet")},
        cache_dir=str(out.parent / f"hf_cache_{out.name}"),
    )["train"]


def _check_decoded(ds: Any, records: list[ChipRecord]) -> None:
    assert ds.num_rows == 11
    first = ds[0]
    assert isinstance(first["image"], Image.Image) and first["image"].size == (32, 32)
    assert first["image"].mode in ("LA", "RGBA")
    rec = next(r for r in records if r.chip_id == first["chip_id"])
    assert rec.anchors is not None
    np.testing.assert_array_equal(np.array(first["aef_codes"], dtype=np.int8), rec.anchors.codes)
    assert first["caption_fields"]["terrain"] == (rec.caption_fields or {})["terrain"]


def test_datasets_decodes_image_from_file_metadata(
    written: tuple[Path, dict[str, Any]], records: list[ChipRecord]
) -> None:
    out, _ = written
    _check_decoded(_load_train(out), records)


def test_datasets_load_dataset_with_image_cast(
    written: tuple[Path, dict[str, Any]], records: list[ChipRecord]
) -> None:
    datasets = pytest.importorskip("datasets")
    out, _ = written
    ds = _load_train(out).cast_column("image", datasets.Image())
    _check_decoded(ds, records)


def test_byte_identical_rewrites(tmp_path: Path, records: list[ChipRecord]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sa = _write(a, records, make_rejects(3), row_group_rows=4)
    sb = _write(b, records, make_rejects(3), row_group_rows=4)
    assert sa["files"] == sb["files"]
    for f in sa["files"]:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_rollover_by_rows_and_bytes(tmp_path: Path, records: list[ChipRecord]) -> None:
    s = _write(tmp_path / "rows", records, max_rows_per_shard=4, row_group_rows=3)
    train = [f for f in s["files"] if f.startswith("data/train-")]
    assert train == [f"data/train-00007-{i:03d}.parquet" for i in range(3)]
    counts = [pq.ParquetFile(tmp_path / "rows" / f).metadata.num_rows for f in train]
    assert counts == [4, 4, 3]
    assert pq.ParquetFile(tmp_path / "rows" / train[0]).metadata.num_row_groups == 2  # 3 + 1

    s = _write(tmp_path / "bytes", records, max_bytes_per_shard=12_000, row_group_rows=2)
    parts = [f for f in s["files"] if f.startswith("data/")]
    assert len(parts) > 4
    total = sum(pq.ParquetFile(tmp_path / "bytes" / f).metadata.num_rows for f in parts)
    assert total == len(records)


def test_crash_leaves_nothing_under_final_names(tmp_path: Path, records: list[ChipRecord]) -> None:
    older = _write(tmp_path, records[:4])  # a finished older shard of task 7 ...
    other = tmp_path / "data" / "train-00003-000.parquet"  # ... and one of another task
    other.write_bytes((tmp_path / older["files"][0]).read_bytes())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir()}

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with ShardWriter(tmp_path, 9, config_hash="x", pipeline_version="0.1.0", row_group_rows=2) as w:
            for r in records:
                w.write(r)  # several row groups already on disk (as temporaries)
            raise Boom("worker died")
    assert not list(tmp_path.rglob("*-00009-*.parquet"))
    assert not list(tmp_path.rglob("*.tmp"))
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir()}
    assert after == before

    # without the context manager: the temporaries stay hidden, no final name appears
    w = ShardWriter(tmp_path, 10, config_hash="x", pipeline_version="0.1.0", row_group_rows=2)
    for r in records[:5]:
        w.write(r)
    assert not list(tmp_path.rglob("*-00010-*.parquet"))
    assert all(p.name.startswith(".") for p in tmp_path.rglob("*.tmp"))
    w.abort()
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_fields_and_misuse_are_named_errors(tmp_path: Path) -> None:
    rec = make_record(2, "train")
    rec.caption = None
    w = ShardWriter(tmp_path, 1, config_hash="x", pipeline_version="0.1.0")
    with pytest.raises(ShardWriterError, match=r"`caption` is empty; the text stage"):
        w.write(rec)
    rec = make_record(2, "holdout")
    with pytest.raises(ShardWriterError, match="split 'holdout'"):
        w.write(rec)
    with pytest.raises(ShardWriterError, match="not rejected"):
        w.reject(make_record(2, "train"))
    with pytest.raises(ShardWriterError, match="pass it to reject"):
        w.write(make_rejects(2)[1])
    rec = make_record(2, "train")
    assert rec.georef is not None
    rec.georef.footprint_wkb = b"not a polygon"
    with pytest.raises(ShardWriterError, match="not valid WKB"):
        w.write(rec)
    assert w.close()["files"] == []
    with pytest.raises(ShardWriterError, match="already closed"):
        w.write(make_record(2, "train"))


def test_png_in_row_is_a_real_png(written: tuple[Path, dict[str, Any]]) -> None:
    out, _ = written
    row = pq.read_table(out / "data" / "train-00007-000.parquet", columns=["image", "chip_id"]).to_pylist()[0]
    assert row["image"]["path"] == f"{row['chip_id']}.png"
    with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
        assert im.format == "PNG"


def test_backscatter_column_is_null_by_default_and_round_trips_when_on(
    tmp_path: Path, records: list[ChipRecord], written: tuple[Path, dict[str, Any]]
) -> None:
    from schemas.backscatter import decode_backscatter

    out, _ = written
    off = pq.read_table(out / "data", columns=["backscatter_db"]).column("backscatter_db").to_pylist()
    assert off and all(v is None for v in off)
    _write(tmp_path / "on", records, backscatter_column=True)
    t = pq.read_table(
        tmp_path / "on" / "data", columns=["chip_id", "backscatter_db", "polarisations"]
    ).to_pylist()
    by_id = {r.chip_id: r for r in records}
    assert len(t) == len(records)
    for row in t:
        arr = decode_backscatter(row["backscatter_db"])
        db = by_id[row["chip_id"]].db
        assert db is not None and arr.dtype == np.float32 and arr.shape == db.shape
        assert arr.shape[0] == len(row["polarisations"])
        np.testing.assert_array_equal(arr, db)  # NaN where invalid, bit-exact elsewhere
    with pytest.raises(ValueError, match="not a zlib-compressed"):
        decode_backscatter(b"not an array")


def _readme_column_types() -> dict[str, str]:
    """The `| column | type | meaning |` table of README's row-schema section: column -> type."""
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text().split("## The row schema", 1)[1].split("\n## ", 1)[0]
    return {m[0]: m[1] for m in re.findall(r"^\| `([a-z0-9_]+)` \| `([^`]+)` \|", text, re.M)}


def test_written_column_types_are_the_documented_ones(written: tuple[Path, dict[str, Any]]) -> None:
    """Every column of a written shard has the Arrow type README documents (the published contract)."""
    out, _ = written
    path = next(out.rglob("train-*.parquet"))
    documented = _readme_column_types()
    actual = {f.name: str(f.type) for f in pq.read_schema(path)}
    assert set(documented) == set(actual)
    assert {k: re.sub(r"<element:", "<item:", v) for k, v in actual.items()} == documented


def test_a_scene_without_a_mode_writes_a_null_mode(tmp_path: Path) -> None:
    """`mode` / `orbit_direction` are unknown for some scenes (a plain GeoTIFF): null, never a guess."""
    import dataclasses

    r = make_record(0, "train")
    r.scene = dataclasses.replace(r.scene, mode=None, orbit_direction=None)
    _write(tmp_path, [r])
    (row,) = pq.read_table(
        next(tmp_path.rglob("train-*.parquet")), columns=["mode", "orbit_direction"]
    ).to_pylist()
    assert row == {"mode": None, "orbit_direction": None}


def _large(index: int, side: int) -> ChipRecord:
    """A chip of side x side noisy pixels (its PNG hardly compresses: about side^2 bytes)."""
    rec = make_record(index, "train")
    rng = np.random.default_rng(index)
    rec.db = rng.uniform(-25.0, 5.0, (1, side, side)).astype(np.float32)
    rec.valid = np.ones((side, side), dtype=bool)
    return rec


def test_row_groups_are_bounded_by_bytes_as_well_as_rows(tmp_path: Path) -> None:
    recs = [_large(i, 512) for i in range(12)]  # PNGs of about 256 KiB, float32 dB of 1 MiB each
    limit = 3 * 2**20
    res = _write(tmp_path, recs, row_group_rows=256, row_group_bytes=limit, backscatter_column=True)
    (shard,) = res["files"]
    md = pq.ParquetFile(tmp_path / shard).metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sum(sizes) == 12 and md.num_row_groups > 1  # 256 rows would fit: the bytes ended each group
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        raw = sum(rg.column(j).total_uncompressed_size for j in range(rg.num_columns))
        assert raw <= limit, f"row group {i}: {raw} bytes uncompressed > {limit}"
    assert max(sizes) >= 2  # and each group holds as many rows as fit, not one per row
    # the same rows, whatever the grouping
    t = pq.read_table(tmp_path / shard, columns=["chip_id"])
    assert t.column("chip_id").to_pylist() == [r.chip_id for r in recs]


def test_small_chips_keep_row_groups_by_rows(tmp_path: Path, records: list[ChipRecord]) -> None:
    res = _write(tmp_path, records[:6], row_group_rows=2)
    for f in res["files"]:
        if f.startswith("data/"):
            md = pq.ParquetFile(tmp_path / f).metadata
            assert all(md.row_group(i).num_rows <= 2 for i in range(md.num_row_groups))
