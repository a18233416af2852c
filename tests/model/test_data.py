"""The trainer's readers: streaming by row group, split filtering, rank x worker sharding, exact resume, image
and box rescaling, de-quantization on REAL AlphaEarth codes, and the release's JSONL + npz format."""

from __future__ import annotations

import functools
import json
import operator
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from model.data import (
    Sample,
    ShardDataset,
    _round_robin_skip,
    rescale_boxes_in_text,
    rescale_detection_answer,
    resize_image,
    to_rgb,
)
from model.release import ReleaseDataset, guess_task
from schemas.aef import dequantize
from tests.model.data_fixtures import (
    CAPTION_Q,
    make_row,
    real_aef_codes,
    write_dataset,
    write_release,
    write_shard,
)

# 40 rows: splits interleaved so that row groups of 4 mix splits; 28 train, 8 validation, 4 test.
SPLITS_40 = (["train"] * 3 + ["validation"]) * 8 + ["train", "test"] * 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("shards"), SPLITS_40, row_group_rows=4, rows_per_file=12)


def ids(ds: torch.utils.data.IterableDataset) -> list[str]:  # type: ignore[type-arg]
    return [s.id for s in ds]


class ReadCounter:
    """Wraps ParquetFile.read_row_group to record every read: (rows, columns)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[tuple[int, tuple[str, ...]]] = []
        original = pq.ParquetFile.read_row_group

        def counted(pf: pq.ParquetFile, i: int, columns: list[str] | None = None, **kw: object) -> object:
            table = original(pf, i, columns=columns, **kw)
            self.reads.append((table.num_rows, tuple(table.column_names)))
            return table

        def whole(*a: object, **kw: object) -> None:
            raise AssertionError("the reader must never read a whole file")

        monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
        monkeypatch.setattr(pq.ParquetFile, "read", whole)
        monkeypatch.setattr(pq, "read_table", whole)


# == streaming =====================================================================================
def test_streams_one_row_group_at_a_time_with_only_the_needed_columns(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = ReadCounter(monkeypatch)
    ds = ShardDataset(shards, split="train", shuffle_buffer=0, image_size=56)
    it = iter(ds)
    first = next(it)
    assert isinstance(first, Sample)
    assert len(counter.reads) == 1  # the first sample needs exactly one row group
    rest = list(it)
    assert 1 + len(rest) == 28
    assert all(rows <= 4 for rows, _ in counter.reads)  # never more than one row group of rows
    assert len(counter.reads) == 10  # 40 rows / 4: every row group holding train read once
    assert set(counter.reads[0][1]) == set(ds.columns)
    assert "facts" not in ds.columns and "geometry" not in ds.columns and "qa" not in ds.columns


def test_lazy_pipeline_holds_at_most_the_shuffle_buffer(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = ReadCounter(monkeypatch)
    ds = ShardDataset(shards, split="train", shuffle_buffer=5, image_size=56)
    next(iter(ds))
    # the buffer of 5 fills from at most two row groups (3 train rows each) before the first sample
    assert len(counter.reads) == 2


def test_row_group_statistics_skip_groups_without_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [make_row(f"c{i}", "train" if i < 8 else "test", seed=i) for i in range(12)]
    write_shard(tmp_path / "data" / "a.parquet", rows, row_group_rows=4)
    counter = ReadCounter(monkeypatch)
    assert len(ids(ShardDataset(tmp_path, split="test", shuffle_buffer=0, image_size=28))) == 4
    assert len(counter.reads) == 1  # the two all-train row groups were never read


# == split, stage, tasks ===========================================================================
def test_keeps_only_the_requested_split_from_the_split_column(shards: Path) -> None:
    expected = {
        s: {f"chip{i:04d}" for i, x in enumerate(SPLITS_40) if x == s}
        for s in ("train", "validation", "test")
    }
    for split, chips in expected.items():
        samples = list(ShardDataset(shards, split=split, shuffle_buffer=0, image_size=28))
        assert {s.id for s in samples} == chips
        assert {s.split for s in samples} == {split}


def test_caption_stage_reuses_the_first_user_assistant_pair(shards: Path) -> None:
    s = next(iter(ShardDataset(shards, split="train", shuffle_buffer=0, image_size=28)))
    assert s.task == "caption" and s.id == "chip0000"
    assert s.messages == [
        {"role": "user", "content": CAPTION_Q},
        {"role": "assistant", "content": "Chip chip0000: a flat area with a bright target."},
    ]


def test_qa_stage_one_sample_per_item_of_the_requested_tasks(shards: Path) -> None:
    all_tasks = list(ShardDataset(shards, split="test", stage="qa", shuffle_buffer=0, image_size=28))
    assert Counter(s.task for s in all_tasks) == {
        "counting": 4,
        "localization": 4,
        "detection": 4,
        "classification": 4,
    }
    assert all_tasks[0].id == "chip0033#counting-0"
    two = list(
        ShardDataset(shards, split="test", stage="qa", tasks=["counting", "detection"], shuffle_buffer=0)
    )
    assert {s.task for s in two} == {"counting", "detection"} and len(two) == 8
    assert two[0].messages[0] == {"role": "user", "content": "How many ships are in the image?"}


def test_rejects_folder_is_ignored_and_bad_sources_are_named(shards: Path, tmp_path: Path) -> None:
    ds = ShardDataset(shards)
    assert all("rejects" not in str(f) for f in ds.files) and len(ds.files) == 4
    with pytest.raises(ValueError, match="not a triplet shard"):
        ShardDataset(shards / "rejects")
    with pytest.raises(FileNotFoundError, match=r"no \*\.parquet"):
        ShardDataset(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        ShardDataset(shards, split="val")
    with pytest.raises(ValueError, match="unknown task"):
        ShardDataset(shards, stage="qa", tasks=["segmentation"])


# == images, boxes, anchors ========================================================================
def test_image_is_rgb_resized_and_boxes_follow_it(shards: Path) -> None:
    samples = {
        s.task: s for s in ShardDataset(shards, split="test", stage="qa", shuffle_buffer=0, image_size=504)
    }
    det, cls = samples["detection"], samples["classification"]
    assert det.image.mode == "RGB" and det.image.size == (504, 504)
    # the chip is 64 px with a box [16, 16, 20, 22]: scale 504 / 64 = 7.875 -> [126, 126, 157.5, 173.25],
    # written as the enclosing integer box (schemas.frames.box_to_frame)
    assert json.loads(det.messages[1]["content"]) == [{"bbox_2d": [126, 126, 158, 174], "label": "ship"}]
    assert "[126, 126, 158, 174]" in cls.messages[0]["content"] and cls.messages[1]["content"] == "ship"
    assert samples["counting"].messages[1]["content"] == "1"


def test_resize_image_rounds_to_the_patch_multiple_and_reports_scales() -> None:
    img = Image.new("RGB", (64, 32))
    out, sx, sy = resize_image(img, 504)
    assert out.size == (504, 504) and (sx, sy) == (504 / 64, 504 / 32)
    out, sx, sy = resize_image(img, (500, 250))  # -> nearest multiples of 28: 504 x 252
    assert out.size == (504, 252) and sx == pytest.approx(504 / 64)
    assert resize_image(img, (56, 28))[0].size == (56, 28)


def test_to_rgb_drops_the_mask_channel_instead_of_compositing() -> None:
    la = Image.fromarray(np.dstack([np.full((4, 4), 200, np.uint8), np.zeros((4, 4), np.uint8)]), mode="LA")
    rgb = to_rgb(la)
    assert rgb.mode == "RGB" and np.asarray(rgb).min() == 200  # alpha 0 did not black the pixels out
    rgba = Image.fromarray(np.full((2, 2, 4), (10, 20, 30, 0), np.uint8), mode="RGBA")
    assert tuple(np.asarray(to_rgb(rgba))[0, 0]) == (10, 20, 30)


def test_box_rescaling_clips_and_keeps_none() -> None:
    assert rescale_detection_answer("None", 2.0, 2.0, 100, 100) == "None"
    out = rescale_detection_answer('[{"bbox_2d": [10, 10, 60, 30], "label": "plane"}]', 2.0, 0.5, 100, 100)
    assert json.loads(out) == [{"bbox_2d": [20, 5, 100, 15], "label": "plane"}]
    assert rescale_boxes_in_text("box [1, 2, 3, 4] and [x1, y1, x2, y2]", 10, 10, 504, 504) == (
        "box [10, 20, 30, 40] and [x1, y1, x2, y2]"
    )
    with pytest.raises(ValueError, match="not JSON"):
        rescale_detection_answer("[{bbox", 2.0, 2.0, 10, 10)


def test_rescaled_questions_restate_their_frame_and_boxes_keep_their_cells() -> None:
    """A QA item written in the 64 x 64 chip frame, resized to 504: the question names the new frame,
    and the rescaled box matches the chip box scaled by 504 / 64 (enclosing) and keeps its 3 x 3 cell."""
    from model.data import rescale_qa

    q = 'Detect all ships. Answer with [{"bbox_2d": [x1, y1, x2, y2], "label": "ship"}] in pixel coordinates of the 64 x 64 image.'
    a = json.dumps([{"bbox_2d": [20, 5, 22, 7], "label": "ship"}])  # centre x 21 < 64 / 3: cell 1
    q2, a2 = rescale_qa("detection", q, a, 504 / 64, 504 / 64, 504, 504)
    assert "pixel coordinates of the 504 x 504 image" in q2 and "64 x 64" not in q2
    (box,) = [it["bbox_2d"] for it in json.loads(a2)]
    assert box == [157, 39, 174, 56]  # [157.5, 39.375, 173.25, 55.125] enclosed
    assert (box[0] + box[2]) / 2 < 504 / 3  # still in the left third, as in the chip
    cq, _ = rescale_qa(
        "classification",
        "What is at [20, 5, 22, 7] (pixel coordinates of the 64 x 64 image)?",
        "ship",
        504 / 64,
        504 / 64,
        504,
        504,
    )
    assert cq == "What is at [157, 39, 174, 56] (pixel coordinates of the 504 x 504 image)?"


def test_dequantizes_real_alphaearth_codes_to_unit_norms(tmp_path: Path) -> None:
    codes = real_aef_codes()  # (100, 64) REAL codes
    rows = [make_row(f"r{k}", grid=4, codes=codes[16 * k : 16 * (k + 1)].copy(), seed=k) for k in range(6)]
    bad = codes[:16].copy()
    bad[3] = -128  # one masked anchor
    rows.append(make_row("masked", grid=4, codes=bad, seed=9))
    write_shard(tmp_path / "a.parquet", rows, row_group_rows=3)
    samples = {s.id: s for s in ShardDataset(tmp_path, shuffle_buffer=0, image_size=28)}
    for k in range(6):
        s = samples[f"r{k}"]
        assert s.features.dtype == np.float32 and s.features.shape == (16, 64)
        norms = np.linalg.norm(s.features[s.valid], axis=1)
        assert s.valid.all() and norms.min() >= 0.99 and norms.max() <= 1.01
        np.testing.assert_array_equal(s.features, dequantize(codes[16 * k : 16 * (k + 1)]))
    m = samples["masked"]
    assert not m.valid[3] and m.valid.sum() == 15 and not m.features[3].any()
    assert m.positions.shape == (16, 2) and m.positions.dtype == np.float32
    np.testing.assert_allclose(m.positions[1], [0.125, 0.375])  # row-major (y, x) of anchor 1


# == sharding ======================================================================================
def loader_ids(ds: ShardDataset, num_workers: int, batch_size: int = 1) -> list[str]:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    return [s.id for batch in loader for s in batch]


@pytest.mark.parametrize(("world_size", "num_workers"), [(2, 0), (3, 0), (2, 2)])
def test_ranks_and_workers_cover_every_row_exactly_once(
    shards: Path, world_size: int, num_workers: int
) -> None:
    seen: list[str] = []
    per_rank = []
    for rank in range(world_size):
        ds = ShardDataset(shards, split="train", rank=rank, world_size=world_size, image_size=28, seed=3)
        got = loader_ids(ds, num_workers)
        per_rank.append(got)
        seen += got
    assert len(seen) == len(set(seen)) == 28  # no overlap, full coverage
    assert all(per_rank)


def test_more_consumers_than_row_groups_splits_row_groups(tmp_path: Path) -> None:
    write_shard(tmp_path / "a.parquet", [make_row(f"c{i}", seed=i) for i in range(8)], row_group_rows=8)
    got = [ids(ShardDataset(tmp_path, rank=r, world_size=4, image_size=28)) for r in range(4)]
    assert sorted(functools.reduce(operator.iadd, got, [])) == [f"c{i}" for i in range(8)]
    assert [len(g) for g in got] == [2, 2, 2, 2]


# == shuffling and resume ==========================================================================
def test_shuffle_is_seeded_and_changes_per_epoch(shards: Path) -> None:
    a = ids(ShardDataset(shards, split="train", seed=1, shuffle_buffer=8, epochs=2, image_size=28))
    b = ids(ShardDataset(shards, split="train", seed=1, shuffle_buffer=8, epochs=2, image_size=28))
    c = ids(ShardDataset(shards, split="train", seed=2, shuffle_buffer=8, epochs=2, image_size=28))
    assert a == b and a != c
    assert a[:28] != a[28:] and sorted(a[:28]) == sorted(a[28:])  # each epoch a permutation of the split
    assert a[:28] != sorted(a[:28])


def test_iterating_again_repeats_the_run_unless_set_epoch(shards: Path) -> None:
    ds = ShardDataset(shards, split="train", seed=1, shuffle_buffer=8, image_size=28)
    first = ids(ds)
    it = iter(ds)
    next(it)  # an abandoned iteration (e.g. a few eval batches) does not shift the next one
    assert ds.state_dict()["offset"] == 1
    assert ids(ds) == first
    ds.set_epoch(1)
    second = ids(ds)
    assert second != first and sorted(second) == sorted(first)
    assert ds.state_dict()["epoch"] == 2 and ds.state_dict()["offset"] == 0


@pytest.mark.parametrize("cut", [1, 13, 28, 40])
def test_resume_in_the_main_process_gives_the_identical_remaining_sequence(shards: Path, cut: int) -> None:
    def make() -> ShardDataset:
        return ShardDataset(
            shards, split="train", stage="caption", seed=5, shuffle_buffer=6, epochs=2, image_size=28
        )

    full = ids(make())
    ds = make()
    it = iter(ds)
    head = [next(it).id for _ in range(cut)]
    state = json.loads(json.dumps(ds.state_dict()))  # survives a checkpoint round trip
    assert state["epoch"] == (cut - 1) // 28 and state["offset"] == cut - 28 * state["epoch"]
    resumed = make()
    resumed.load_state_dict(state)
    assert head + ids(resumed) == full


@pytest.mark.parametrize("consumed", [4, 10, 26])
def test_resume_with_dataloader_workers(shards: Path, consumed: int) -> None:
    def make() -> ShardDataset:
        return ShardDataset(
            shards, split="train", stage="qa", tasks=["counting"], seed=7, shuffle_buffer=4, image_size=28
        )

    full = loader_ids(make(), num_workers=2, batch_size=2)
    assert sorted(full) == sorted(
        f"{c}#counting-0" for c in ids(ShardDataset(shards, split="train", image_size=28))
    )
    ds = make()
    state = ds.state_dict(consumed=consumed, batch_size=2, num_workers=2)
    resumed = make()
    resumed.load_state_dict(state)
    assert loader_ids(resumed, num_workers=2, batch_size=2) == full[consumed:]
    with pytest.raises(ValueError, match="num_workers"):
        list(iter(resumed))  # the main process is not the 2-worker loader the state came from


@pytest.mark.parametrize("shuffle_buffer", [0, 3])
@pytest.mark.parametrize("consumed", [2, 6, 8])
def test_resume_with_workers_of_uneven_length(tmp_path: Path, shuffle_buffer: int, consumed: int) -> None:
    # row groups of 3, 3, 3, 1 rows: the two workers get 6 and 4 (or 7 and 3) rows; one runs out first
    write_shard(tmp_path / "a.parquet", [make_row(f"c{i}", seed=i) for i in range(10)], row_group_rows=3)

    def make() -> ShardDataset:
        return ShardDataset(tmp_path, shuffle_buffer=shuffle_buffer, seed=4, image_size=28)

    full = loader_ids(make(), num_workers=2, batch_size=2)
    assert sorted(full) == [f"c{i}" for i in range(10)]
    resumed = make()
    resumed.load_state_dict(make().state_dict(consumed=consumed, batch_size=2, num_workers=2))
    assert loader_ids(resumed, num_workers=2, batch_size=2) == full[consumed:]


def test_round_robin_skip_follows_exhausted_workers() -> None:
    # worker 0 has 3 samples, worker 1 has 7, batches of 2: stream = w0 2, w1 2, w0 1, w1 2, w1 2, w1 1
    assert _round_robin_skip(5, 2, [3, 7]) == ([3, 2], 1)
    assert _round_robin_skip(4, 2, [3, 7]) == ([2, 2], 0)
    assert _round_robin_skip(9, 2, [3, 7]) == ([3, 6], 0)
    assert _round_robin_skip(6, 2, [4, 4, 4]) == ([2, 2, 2], 0)
    with pytest.raises(ValueError, match="past the end"):
        _round_robin_skip(11, 2, [3, 7])


def test_state_refuses_other_settings_or_data(shards: Path, tmp_path: Path) -> None:
    state = ShardDataset(shards, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        ShardDataset(shards, seed=2).load_state_dict(state)
    other = write_dataset(tmp_path / "other", ["train"] * 4)
    with pytest.raises(ValueError, match="fingerprint"):
        ShardDataset(other, seed=1).load_state_dict(state)


def test_fingerprint_names_files_rows_and_changes_with_content(shards: Path, tmp_path: Path) -> None:
    fp = ShardDataset(shards).fingerprint()
    assert fp["rows"] == 40 and len(fp["files"]) == 4 and fp["schema_version"] == "1.1.0"
    assert {"size", "footer_sha256", "rows"} <= set(fp["files"][0])
    assert ShardDataset(shards).fingerprint()["digest"] == fp["digest"]
    assert ShardDataset(shards, split="test").fingerprint()["digest"] != fp["digest"]
    changed = write_dataset(tmp_path / "c", [*SPLITS_40[:-1], "train"], row_group_rows=4, rows_per_file=12)
    assert ShardDataset(changed).fingerprint()["digest"] != fp["digest"]


# == the release format ============================================================================
@pytest.mark.parametrize("layout", ["features", "wide"])
def test_release_format_reads_both_npz_layouts(tmp_path: Path, layout: str) -> None:
    path, truth = write_release(tmp_path, n=3, size=100, layout=layout)
    samples = list(ReleaseDataset(path, image_size=56))
    assert [s.id for s in samples] == ["img0", "img1", "img2"]
    for s, t in zip(samples, truth, strict=True):
        assert s.task == "detection" and s.image.size == (56, 56) and s.image.mode == "RGB"
        np.testing.assert_allclose(s.features, t["features"], atol=1e-6)
        np.testing.assert_allclose(s.positions, t["positions"], atol=1e-6)
        assert s.valid.all()
        assert "<image>" not in s.messages[0]["content"]
        # scaled 56 / 100 and enclosed (schemas.frames.box_to_frame)
        assert json.loads(s.messages[1]["content"]) == [{"bbox_2d": [5, 11, 17, 23], "label": "plane"}]


def test_release_workers_split_lines(tmp_path: Path) -> None:
    path, _ = write_release(tmp_path, n=5)
    ds = ReleaseDataset(path, image_size=28, task="detection")
    assert sorted(loader_ids(ds, 2)) == [f"img{i}" for i in range(5)]  # type: ignore[arg-type]


def test_guess_task() -> None:
    assert guess_task("How many planes are there?") == "counting"
    assert guess_task("Which cells of the 3 x 3 grid contain ships?") == "localization"
    assert guess_task("Detect all ships; answer with bbox_2d JSON.") == "detection"
    assert guess_task("What is the category of the object in the box [1, 2, 3, 4]?") == "classification"
    assert guess_task("Describe this image.") == "caption"


# == the real pipeline's shards ====================================================================
@pytest.mark.slow
def test_reads_the_demo_pipeline_shards(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.model.data_fixtures import DEMO_REGION, ROOT

    out = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "pipelines", "build", str(DEMO_REGION), "--set", f"output.dir={out}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    total = pq.ParquetDataset(out / "data").read(columns=["split"]).column("split").to_pylist()
    for split in ("train", "validation", "test"):
        samples = list(ShardDataset(out, split=split, stage="qa", image_size=504))
        assert len({s.id.split("#")[0] for s in samples}) == total.count(split)
        assert all(s.image.size == (504, 504) for s in samples)
