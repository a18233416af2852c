"""Exports: the FUSAR-GPT release layout read back by the project's release reader gives the samples the
trainer reads from the shards; the LLaVA layout holds every text of every chip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas.frames import qa_frame
from tests.model.data_fixtures import write_dataset
from triplet_builder.exports import export

SPLITS = ["train"] * 5 + ["validation"] * 2 + ["test"]
PHRASE = qa_frame(64, 64).phrase  # the builder's questions state the chip's frame
BOX = [16, 16, 20, 22]  # in the 64 px chip; x 504 / 64 = 7.875 -> enclosing [126, 126, 158, 174]
QA = [
    {"task": "counting", "question": "How many ships are in the image?", "answer": "1"},
    {"task": "localization", "question": "Which of the 3 x 3 grid cells contain ships?", "answer": "1"},
    {
        "task": "detection",
        "question": f"Detect all ships; give bbox_2d in {PHRASE}.",
        "answer": json.dumps([{"bbox_2d": BOX, "label": "ship"}]),
    },
    {
        "task": "classification",
        "question": f"What is the category of the object in the box {BOX} ({PHRASE})?",
        "answer": "ship",
    },
]


def built(tmp_path: Path) -> Path:
    """A build folder: shards of the trainer's fixtures and a manifest listing them."""
    root = write_dataset(tmp_path / "build", SPLITS, rows_per_file=3, qa=QA)
    files = sorted(str(p.relative_to(root)) for p in (root / "data").glob("*.parquet"))
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    return root


def test_fusar_gpt_round_trip_gives_the_trainers_samples(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")  # the reader side is the trainer's
    from model.data import ShardDataset
    from model.release import ReleaseDataset

    root = built(tmp_path)
    dest = tmp_path / "release"
    res = export(root, dest, "fusar-gpt")
    assert res["chips"] == len(SPLITS)
    for split in ("train", "validation", "test"):
        for stage, tasks in (
            ("caption", ["caption"]),
            ("qa", ["counting", "localization", "detection", "classification"]),
        ):
            shard = ShardDataset(
                root, split=split, stage=stage, image_size=504, tasks=None if stage == "caption" else tasks
            )
            expect = {s.id: s for s in shard}
            got = {}
            for task in tasks:
                path = dest / f"{task}_{split}.jsonl"
                got |= {s.id: s for s in ReleaseDataset(path, image_size=504, task=task, split=split)}
                recs = [json.loads(line) for line in path.read_text().splitlines()]
                assert all(r["coordinate_size"] == 504 for r in recs)
                no_aef = [
                    json.loads(line)
                    for line in path.with_name(f"{task}_{split}_no_aef.jsonl").read_text().splitlines()
                ]
                assert [{k: v for k, v in r.items() if k != "aef"} for r in recs] == no_aef
            assert sorted(got) == sorted(expect) and got
            for k, s in expect.items():
                r = got[k]
                assert r.messages == s.messages and r.task == s.task
                assert np.array_equal(np.asarray(r.image), np.asarray(s.image))
                # the release marks an invalid anchor by all-zero features; the shards by aef_valid
                assert np.array_equal(r.valid, s.valid)
                np.testing.assert_array_equal(r.features[r.valid], s.features[s.valid])
                np.testing.assert_array_equal(r.positions, s.positions)
    del torch


def test_fusar_gpt_boxes_are_in_the_504_frame(tmp_path: Path) -> None:
    root = built(tmp_path)
    export(root, tmp_path / "rel", "fusar-gpt", split="test")
    (rec,) = [json.loads(x) for x in (tmp_path / "rel" / "detection_test.jsonl").read_text().splitlines()]
    assert "504 x 504 image" in rec["question"] and "64 x 64" not in rec["question"]
    assert json.loads(rec["answer"]) == [{"bbox_2d": [126, 126, 158, 174], "label": "ship"}]
    (cls,) = [
        json.loads(x) for x in (tmp_path / "rel" / "classification_test.jsonl").read_text().splitlines()
    ]
    assert "[126, 126, 158, 174]" in cls["question"] and "504 x 504 image" in cls["question"]


def test_llava_holds_every_text_once(tmp_path: Path) -> None:
    root = built(tmp_path)
    res = export(root, tmp_path / "llava", "llava")
    assert res["files"] == {"llava_test.json": 1, "llava_train.json": 5, "llava_validation.json": 2}
    recs = json.loads((tmp_path / "llava" / "llava_train.json").read_text())
    for r in recs:
        assert (tmp_path / "llava" / r["image"]).is_file()
        turns = r["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n") and sum("<image>" in t["value"] for t in turns) == 1


def test_export_refuses_a_non_empty_destination_and_a_folder_without_manifest(tmp_path: Path) -> None:
    root = built(tmp_path)
    dest = tmp_path / "used"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        export(root, dest, "fusar-gpt")
    assert (dest / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        export(tmp_path, tmp_path / "new", "llava")
    with pytest.raises(ValueError, match="not one of"):
        export(root, tmp_path / "x", "coco")


def test_cli_export_one_line_out_and_one_line_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = built(tmp_path)
    cmd = [sys.executable, "-m", "pipelines", "export", str(root), str(tmp_path / "e"), "--format", "llava"]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("exported 8 chip(s) as llava"), ok.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "not an empty folder" in again.stderr and "Traceback" not in again.stderr
