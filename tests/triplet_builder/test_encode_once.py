"""The chip PNG is encoded once per chip: the LLM writer's vision path and the shard writer share it, and
the stored PNG is byte for byte what `encode_chip` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import triplet_builder.record as record_mod
from schemas.codec import Stretch, encode_chip
from tests.triplet_builder.text.test_llm import KEY_ENV, SECRET, _records, llm_cfg, parts, serve_llm
from tests.triplet_builder.writers.records import make_record
from triplet_builder.config import TextConfig
from triplet_builder.stages.base import Stats
from triplet_builder.stages.text import WriteText
from triplet_builder.writers.parquet import ShardWriter


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real encoder's calls through ChipRecord.encoded (it still encodes)."""
    calls: list[int] = []
    real = record_mod.encode_chip

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(record_mod, "encode_chip", counting)
    return calls


def test_the_vision_path_and_the_writer_share_one_encoding(
    tmp_path: Path, encodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with serve_llm() as srv:
        text = TextConfig(writer="llm", llm=llm_cfg(srv.url, vision=True))
        stage = WriteText(text, cache_dir=tmp_path / "llm", stretch=Stretch())
        (rec,) = list(stage.run(_records(1), Stats()))
        stage.close()
    assert len(encodes) == 1
    (sent,) = parts(srv.log, "caption")[0]["images"]
    assert rec.encoded(Stretch()).png == sent and len(encodes) == 1  # the writer's call: no new encode
    assert rec.db is not None and rec.valid is not None
    assert sent == encode_chip(rec.db, rec.valid, rec.scene.polarisations, Stretch()).png


def test_a_new_stretch_or_new_pixels_encode_again(encodes: list[int]) -> None:
    rec = make_record(3, "train")
    first = rec.encoded(Stretch())
    assert rec.encoded(Stretch()) is first and len(encodes) == 1
    other = rec.encoded(Stretch(min_db=-30.0, max_db=0.0))
    assert len(encodes) == 2 and other.png != first.png
    assert rec.db is not None
    rec.db = rec.db + np.float32(1.0)  # a stage replacing the pixels
    assert rec.encoded(Stretch()).png != first.png and len(encodes) == 3


def test_the_shard_stores_the_encoders_png(tmp_path: Path, encodes: list[int]) -> None:
    rec = make_record(5, "train")
    assert rec.db is not None and rec.valid is not None
    want = encode_chip(rec.db, rec.valid, rec.scene.polarisations, Stretch()).png
    with ShardWriter(tmp_path, 0, config_hash="x", pipeline_version="0", stretch=Stretch()) as w:
        w.write(rec)
    (shard,) = (tmp_path / "data").rglob("*.parquet")
    assert pq.read_table(shard, columns=["image"]).to_pylist()[0]["image"]["bytes"] == want
    assert len(encodes) == 1
