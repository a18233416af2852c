"""`verify OUTPUT` passes a fresh build (through the CLI, in the quick subset) and names each planted
problem: a stray, a missing or a renamed shard, a duplicate chip id, counts that differ, a card whose
configs do not match the files, a shard whose schema differs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.verify import verify
from tests.pipelines.demo import cli

ROOT = Path(__file__).resolve().parents[2]


def test_metadata_indexes_every_kept_chip_by_file_and_row(built: Path) -> None:
    import geopandas

    meta = geopandas.read_parquet(built / "metadata.parquet")
    assert len(meta) == 43 and meta.crs.to_string() == "OGC:CRS84" and meta.geometry.is_valid.all()
    for f, group in meta.groupby("file"):
        shard = pq.read_table(built / f, columns=["chip_id", "split", "centre_lon", "geometry"])
        for r in group.itertuples():
            assert shard.column("chip_id")[r.row].as_py() == r.chip_id
            assert shard.column("split")[r.row].as_py() == r.split
            assert shard.column("geometry")[r.row].as_py() == r.geometry.wkb
    card = (built / "README.md").read_text()
    assert "config_name: metadata" in card and "data_files: metadata.parquet" in card
    assert "config_name: rejects" in card


def test_a_fresh_build_verifies(built: Path) -> None:
    r = cli("verify", str(built))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "verified" in r.stdout and "43 rows" in r.stdout


def _manifest(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "manifest.json").read_text())


def _stray(out: Path) -> None:
    first = _manifest(out)["files"][0]
    shutil.copy(out / first, out / "data" / "train-09999-000.parquet")


def _missing(out: Path) -> None:
    (out / _manifest(out)["files"][0]).unlink()


def _duplicate(out: Path) -> None:
    m = _manifest(out)
    train = [f for f in m["files"] if "/train-" in f]
    t = pq.read_table(out / train[1])
    first = pq.read_table(out / train[0]).column("chip_id")[0].as_py()
    ids = t.column("chip_id").to_pylist()
    ids[0] = first
    t = t.set_column(t.schema.get_field_index("chip_id"), t.schema.field("chip_id"), [ids])
    pq.write_table(t, out / train[1])


def _counts(out: Path) -> None:
    m = _manifest(out)
    m["counts"]["chips_kept"] += 1
    (out / "manifest.json").write_text(json.dumps(m))


def _card(out: Path) -> None:
    card = out / "README.md"
    card.write_text(card.read_text().replace("data/validation-*.parquet", "data/val-*.parquet"))


def _schema(out: Path) -> None:
    f = out / _manifest(out)["files"][0]
    t = pq.read_table(f)
    pq.write_table(t.drop_columns(["caption"]).replace_schema_metadata(t.schema.metadata), f)


def _metadata(out: Path) -> None:
    t = pq.read_table(out / "metadata.parquet")
    pq.write_table(t.slice(1).replace_schema_metadata(t.schema.metadata), out / "metadata.parquet")


@pytest.mark.parametrize(
    ("plant", "needle"),
    [
        (_stray, "data/train-09999-000.parquet: on disk but not in the manifest"),
        (_missing, "listed in the manifest but missing"),
        (_duplicate, "appears 2 times in the shards"),
        (_counts, "the manifest says 44 kept"),
        (_card, "pattern data/val-*.parquet matches no file"),
        (_schema, "column caption is missing"),
        (_metadata, "metadata.parquet: its chip ids differ from the shards'"),
    ],
)
def test_planted_problems_are_named(
    built: Path, tmp_path: Path, plant: Callable[[Path], None], needle: str
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    assert verify(out) == []
    plant(out)
    problems = verify(out)
    assert any(needle in p for p in problems), problems
    if plant in (_stray, _counts):  # the CLI's exit and lines (a subprocess costs seconds: two cases)
        r = cli("verify", str(out))
        assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr
