"""Tests of the offline text writer (triplet_builder/text/offline.py) and the writer helpers of
triplet_builder/text/base.py, on the hand-written fact sheets of factsheets.py."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas import CAPTION_FIELDS, QA_TASKS, facts_schema_with, json_schema
from schemas.frames import box_to_norm
from schemas.vocabulary import LAND_COVER_PRODUCTS, OSM_FEATURES, normalise_object_class
from triplet_builder.config import QaConfig
from triplet_builder.facts.functionality import scene_type
from triplet_builder.facts.surface import cell_of
from triplet_builder.text.base import TextResult, TextWriter, build_messages, render_caption, validate_text
from triplet_builder.text.consistency import HEDGE_WORDS, check_text
from triplet_builder.text.offline import OfflineWriter

from .factsheets import FACT_SHEETS, fact_sheet

REPO = Path(__file__).resolve().parents[3]
NAMES = sorted(FACT_SHEETS)
CHIP_IDS = [hashlib.sha256(f"scene-{i}".encode()).hexdigest()[:16] for i in range(25)]
_HEDGE_RE = re.compile(r"\b(?:" + "|".join(HEDGE_WORDS) + r")\b", re.I)
_MONTH_MAY_RE = re.compile(r"\bMay(?= \d)|(?<=\d )May\b")


def _all_text(res: TextResult) -> str:
    return " ".join([res.caption] + [q["question"] + " " + q["answer"] for q in res.qa])


def _qa_for(res: TextResult, task: str, noun: str) -> list[dict[str, str]]:
    """The QA items of a task whose question names the (plural) noun."""
    return [q for q in res.qa if q["task"] == task and re.search(rf"\b{re.escape(noun)}\b", q["question"])]


# -- the fixtures themselves ----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_fixtures_are_valid_and_self_consistent(name: str) -> None:
    facts = fact_sheet(name)
    Draft202012Validator(json_schema("facts"), format_checker=FormatChecker()).validate(facts)
    w, h = facts["chip"]["width_px"], facts["chip"]["height_px"]
    for item in facts["objects"] + facts["detections"]["items"]:
        x1, y1, x2, y2 = item["bbox"]
        assert item["cell"] == cell_of((x1 + x2) / 2, (y1 + y2) / 2, w, h), item
    s = facts["surface"]
    for key in ("water_fraction", "bright_fraction"):
        mean = sum(c[key] for c in s["cells"]) / 9
        assert abs(mean - s[key]) < 0.011, (key, mean)


# -- schema validity and consistency ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_output_validates_and_passes_the_checker(name: str) -> None:
    facts = fact_sheet(name)
    writer = OfflineWriter()
    caption_v = Draft202012Validator(json_schema("caption"))
    qa_v = Draft202012Validator(json_schema("qa"))
    for chip_id in CHIP_IDS:
        res = writer.write(facts, chip_id)
        caption_v.validate(res.caption_fields)
        qa_v.validate(res.qa)
        validate_text(res.caption_fields, res.qa)
        assert tuple(res.caption_fields) == CAPTION_FIELDS
        assert res.caption == render_caption(res.caption_fields)
        assert res.caption_fields["roads"] is None
        assert {q["task"] for q in res.qa} <= set(QA_TASKS)
        problems = check_text(facts, res.caption_fields, res.qa)
        assert problems == [], f"{name} / {chip_id}: {problems}\n{res.caption}"
    assert facts == FACT_SHEETS[name], "the writer must not modify the fact sheet"


_BOX_Q_RE = re.compile(r"\[\d+, \d+, \d+, \d+\]")  # a question about a box (not the scene type)


def _random_fact_sheet(seed: int) -> dict[str, Any]:
    """A valid fact sheet with seeded random surface, place, acquisition, detections and objects
    (labels with synonyms, head nouns and generic names), built on one of the fixtures."""
    r = random.Random(seed)
    f = fact_sheet(NAMES[seed % len(NAMES)])
    w, h, px = r.choice([256, 300, 512]), r.choice([200, 256, 384]), r.choice([10.0, 5.0, 2.5])
    f["chip"] = {"width_px": w, "height_px": h, "pixel_size_m": px, "width_m": w * px, "height_m": h * px}
    cells = [
        {
            "cell": i + 1,
            "water_fraction": r.choice([0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0, round(r.random(), 3)]),
            "bright_fraction": r.choice([0.0, 0.01, 0.05, 0.1, 0.3, round(r.random() * 0.5, 3)]),
            "valid_fraction": 1.0 if r.random() < 0.8 else round(r.random(), 2),
        }
        for i in range(9)
    ]
    s = f["surface"]
    s["cells"] = cells
    for key in ("water_fraction", "bright_fraction", "valid_fraction"):
        s[key] = round(sum(c[key] for c in cells) / 9, 4)
    s["land_fraction"] = round(1.0 - s["water_fraction"], 4)
    s["mean_db"], s["std_db"] = round(r.uniform(-25, -5), 2), round(r.uniform(0.5, 9), 2)
    if r.random() < 0.2:
        f["place"] = None
    elif f["place"]:
        f["place"]["distance_km"] = r.choice([0.4, 3.3, 9.96, 12.5, 40.0])
        f["place"]["direction"] = "at" if f["place"]["distance_km"] < 1 else r.choice(["N", "SE", "W", "NE"])
    acq = f["acquisition"]
    acq["season"] = r.choice([None, "winter", "summer"])
    acq["orbit_direction"] = r.choice([None, "ascending", "descending"])
    acq["polarisations"] = r.choice([["VV"], ["HH", "HV"], []])
    acq["backscatter"] = r.choice(["sigma0", "unknown"])
    acq["date"] = r.choice(["2019-05-01", "2020-12-31", "2024-03-09"])
    acq["year"] = int(acq["date"][:4])
    f["location"]["centre_lat"] = round(r.uniform(-60, 60), 6)
    f["location"]["centre_lon"] = round(r.uniform(-180, 180), 6)

    def box() -> list[int]:
        x1, y1 = r.randrange(0, w - 20), r.randrange(0, h - 20)
        return [x1, y1, x1 + r.randrange(1, 20), y1 + r.randrange(1, 20)]

    def cell(b: list[int]) -> int:
        return cell_of((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w, h)

    dets = []
    for _ in range(r.choice([0, 1, 2, 5, 13])):
        b = box()
        dets.append(
            {
                "bbox": b,
                "bbox_norm": box_to_norm(b, w, h),
                "cell": cell(b),
                "peak_px": [b[0], b[1]],
                "peak_db": 3.0,
                "area_px": 5,
                "length_m": r.choice([None, 10.0 * (b[2] - b[0])]),  # None: a point target of unknown size
                "on_water": r.random() < 0.5,
            }
        )
    f["detections"]["items"] = dets
    labels = r.choice(
        [
            [],
            ["ship"],
            ["vessel", "fishing vessel"],
            ["plane", "ship"],
            ["object"],
            ["aircraft", "helicopter"],
        ]
    )
    f["objects"] = []
    for _ in range(r.choice([1, 2, 7]) if labels else 0):
        b = box()
        length = r.choice([None, round(r.uniform(5, 300), 1)])
        f["objects"].append(
            {
                "label": (label := r.choice(labels)),
                "class": normalise_object_class(label),
                "bbox": b,
                "bbox_norm": box_to_norm(b, w, h),
                "cell": cell(b),
                "length_m": length,
                "source": "x",
            }
        )
        f["objects"][-1]["class"] = normalise_object_class(f["objects"][-1]["label"])
    if f["objects"] and r.random() < 0.7:  # the region has a label file (issue #9 contract)
        looked = sorted(
            {o["class"] for o in f["objects"]} - {"other"} | set(r.sample(["ship", "aircraft"], 1))
        )
        counts = {c: sum(o["class"] == c for o in f["objects"]) for c in looked}
        f["labels"] = {"source": "x.geojson", "classes_labelled": looked, "counts": counts}
    Draft202012Validator(json_schema("facts"), format_checker=FormatChecker()).validate(f)
    return f


def _random_fractions(r: random.Random, names: list[str]) -> dict[str, float]:
    """Seeded class fractions over some of `names`, summing to 1 up to rounding."""
    chosen = r.sample(names, r.choice([1, 2, 3, 4]))
    weights = [r.random() + 0.05 for _ in chosen]
    return {c: round(x / sum(weights), 3) for c, x in zip(chosen, weights, strict=True)}


def _random_land_cover(r: random.Random) -> dict[str, Any]:
    """ext.land_cover of ESA WorldCover (a year) or Dynamic World (a date range), per chip and cell."""
    product = r.choice(sorted(LAND_COVER_PRODUCTS))
    names = sorted(LAND_COVER_PRODUCTS[product].values())
    cells: list[dict[str, Any]] = []
    for i in range(9):
        fr = _random_fractions(r, names) if r.random() < 0.9 or i == 0 else {}
        valid = r.choice([1.0, 1.0, 0.4, 0.8]) if fr else 0.0
        dom = max(sorted(fr), key=lambda c: fr[c]) if fr else None
        cells.append({"cell": i + 1, "valid_fraction": valid, "dominant": dom, "fractions": fr})
    weight = sum(c["valid_fraction"] for c in cells)
    fr = {}  # the chip's shares: the cells' shares of valid map pixels, pooled
    for c in cells:
        for k, v in c["fractions"].items():
            fr[k] = fr.get(k, 0.0) + v * c["valid_fraction"] / weight
    fr = {k: round(v, 3) for k, v in fr.items() if round(v, 3) > 0}
    world = product == "esa-worldcover"
    return {
        "product": product,
        "version": r.choice(["v100", "v200"]) if world else None,
        "year": r.choice([2020, 2021]) if world else None,
        **(
            {}
            if world
            else {"date_range": r.choice([["2021-01-01", "2021-12-31"], ["2024-02-01", "2024-03-31"]])}
        ),
        "source": r.choice(["cog", "earthengine", "local"]),
        "valid_fraction": round(weight / 9, 3),
        "fractions": fr,
        "dominant": max(sorted(fr), key=lambda c: fr[c]),
        "cells": cells,
    }


def _random_osm(r: random.Random, ground_m2: float) -> dict[str, Any]:
    """ext.osm: some queried features, some of them mapped (counts, lengths, areas, cells)."""
    queried = r.sample(sorted(OSM_FEATURES), r.randrange(1, len(OSM_FEATURES)))
    features = {}
    for name in sorted(r.sample(queried, r.randrange(0, len(queried) + 1))):
        kind = OSM_FEATURES[name]
        features[name] = {
            "count": r.choice([1, 2, 3, 7, 14, 120]),
            "length_m": round(r.choice([35.0, 420.0, 999.0, 2400.0, 12345.6]) * r.uniform(0.9, 1.1), 1)
            if kind == "line"
            else None,
            "area_m2": round(ground_m2 * r.choice([0.02, 0.12, 0.35]), 1) if kind == "area" else None,
            "cells": sorted(r.sample(range(1, 10), r.randrange(1, 5))),
            "names": [],
        }
    built = round(r.random() * 0.4, 3) if "building" in features else r.choice([None, 0.0])
    return {
        "source": r.choice(["overpass", "pbf"]),
        "snapshot": None,
        "queried": queried,
        "features": features,
        "built_up_fraction": built,
    }


def _random_ext_sheet(seed: int) -> dict[str, Any]:
    """A random fact sheet with ext.land_cover and / or ext.osm (issue #9), valid under the section
    schemas."""
    f = _random_fact_sheet(seed)
    r = random.Random(10_000 + seed)
    ext: dict[str, Any] = {}
    if seed % 3 != 1:
        ext["land_cover"] = _random_land_cover(r)
    if seed % 3 != 2:
        ext["osm"] = _random_osm(r, f["chip"]["width_m"] * f["chip"]["height_m"])
    f["ext"] = ext
    sections = {n: json_schema(f"facts_ext/{n}") for n in ("land_cover", "osm")}
    Draft202012Validator(facts_schema_with(sections), format_checker=FormatChecker()).validate(f)
    return f


def test_output_passes_the_checker_on_random_fact_sheets() -> None:
    writer = OfflineWriter()
    for seed in range(120):
        facts = _random_fact_sheet(seed)
        res = writer.write(facts, f"random-{seed}")
        problems = check_text(facts, res.caption_fields, res.qa)
        assert problems == [], f"seed {seed}: {problems}\n{res.caption}"


def test_output_passes_the_checker_on_random_fact_sheets_with_ext_sections() -> None:
    """Land cover, OSM and the functions derived from them, in every field and the QA: the offline
    writer's text of random sheets with ext sections passes the checker, and says something of them."""
    writer = OfflineWriter()
    said = {"land cover": 0, "osm": 0}
    for seed in range(120):
        facts = _random_ext_sheet(seed)
        res = writer.write(facts, f"random-ext-{seed}")
        problems = check_text(facts, res.caption_fields, res.qa)
        assert problems == [], f"seed {seed}: {problems}\n{res.caption}"
        said["land cover"] += "WorldCover" in res.caption or "Dynamic World" in res.caption
        said["osm"] += "OpenStreetMap" in res.caption
    assert said["land cover"] >= 60 and said["osm"] >= 40, said


def test_writer_follows_the_protocol() -> None:
    writer = OfflineWriter()
    assert isinstance(writer, TextWriter)
    assert writer.name == "offline/1.0"
    assert writer.prompt_version


def test_writer_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="negatives_ratio"):
        QaConfig(negatives_ratio=-1)
    with pytest.raises(ValueError, match="near_place_km"):
        OfflineWriter(near_place_km=-3.0)


# -- determinism and variety ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_same_chip_id_gives_identical_output(name: str) -> None:
    facts = fact_sheet(name)
    for chip_id in CHIP_IDS[:5]:
        assert OfflineWriter().write(facts, chip_id) == OfflineWriter().write(fact_sheet(name), chip_id)


def test_output_does_not_depend_on_python_hash_seed() -> None:
    facts = fact_sheet("two_classes")
    script = (
        "import json, sys\n"
        "from triplet_builder.text.offline import OfflineWriter\n"
        "r = OfflineWriter().write(json.load(sys.stdin), sys.argv[1])\n"
        "print(json.dumps([r.caption_fields, r.qa], sort_keys=True))\n"
    )
    outs = []
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", script, CHIP_IDS[3]],
            input=json.dumps(facts),
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=True,
        )
        outs.append(proc.stdout)
    here = OfflineWriter().write(facts, CHIP_IDS[3])
    assert outs[0] == outs[1] == json.dumps([here.caption_fields, here.qa], sort_keys=True) + "\n"


@pytest.mark.parametrize("name", NAMES)
def test_different_chip_ids_give_varied_captions(name: str) -> None:
    facts = fact_sheet(name)
    captions = {OfflineWriter().write(facts, chip_id).caption for chip_id in CHIP_IDS[:10]}
    assert len(captions) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_every_field_and_task_has_several_phrasings(name: str) -> None:
    facts = fact_sheet(name)
    writer = OfflineWriter()
    results = [writer.write(facts, f"variety-{i}") for i in range(150)]
    for field in CAPTION_FIELDS:
        texts = {r.caption_fields[field] for r in results}
        if texts == {None}:
            continue
        assert len(texts) >= 4, (field, texts)
    asked = {q["task"] for r in results for q in r.qa}
    assert {"counting", "localization", "detection"} <= asked, asked  # never vacuous
    for task in sorted(asked):
        questions = {q["question"] for r in results for q in r.qa if q["task"] == task}
        assert len(questions) >= 3, (task, questions)


@pytest.mark.parametrize("name", NAMES)
def test_no_hedge_words(name: str) -> None:
    facts = fact_sheet(name)
    for chip_id in CHIP_IDS:
        text = _MONTH_MAY_RE.sub("", _all_text(OfflineWriter().write(facts, chip_id)))
        assert not _HEDGE_RE.search(text), _HEDGE_RE.search(text)


# -- hand-computed answers --------------------------------------------------------------------------
# fixture -> plural noun in the question -> (count, cells, boxes)
EXPECTED: dict[str, dict[str, tuple[str, str, list[list[int]]]]] = {
    "open_water": {
        "bright point targets": ("2", "4,8", [[40, 120, 46, 127], [130, 200, 139, 205]]),
    },
    "port": {
        "ships": (
            "5",
            "1,2,4,5",
            [
                [20, 30, 34, 36],
                [150, 40, 168, 48],
                [60, 70, 72, 76],
                [30, 150, 44, 157],
                [180, 200, 193, 207],
            ],
        ),
    },
    "land": {"bright point targets": ("0", "None", [])},
    "two_classes": {
        "ships": ("3", "6,9", [[300, 120, 330, 128], [320, 230, 345, 236], [350, 260, 362, 265]]),
        "storage tanks": (
            "4",
            "1,4,7",
            [[40, 30, 52, 42], [30, 120, 44, 134], [60, 125, 74, 139], [45, 220, 57, 232]],
        ),
    },
}
LABEL_OF = {
    "bright point targets": "bright point target",
    "ships": "ship",
    "storage tanks": "storage tank",
}  # vocabulary classes


@pytest.mark.parametrize("name", NAMES)
def test_counting_localization_detection_answers(name: str) -> None:
    facts = fact_sheet(name)
    for chip_id in CHIP_IDS[:8]:
        res = OfflineWriter().write(facts, chip_id)
        classes_asked = 0
        for noun, (count, cells, boxes) in EXPECTED[name].items():
            (counting,) = _qa_for(res, "counting", noun)
            (loc,) = _qa_for(res, "localization", noun)
            (det,) = _qa_for(res, "detection", noun)
            assert counting["answer"] == count
            assert loc["answer"] == cells
            if boxes:
                items = json.loads(det["answer"])
                assert det["answer"] == json.dumps(items)  # one line, FUSAR-GPT style
                assert sorted(i["bbox_2d"] for i in items) == sorted(boxes)
                assert {i["label"] for i in items} == {LABEL_OF[noun]}
            else:
                assert det["answer"] == "None"
            assert "pixel" in det["question"]
            classes_asked += 1
        # nothing else is asked: one counting / localization / detection per expected class
        assert sum(q["task"] == "counting" for q in res.qa) == classes_asked


@pytest.mark.parametrize("name", NAMES)
def test_classification_names_a_labelled_box(name: str) -> None:
    facts = fact_sheet(name)
    labels = {o["class"] for o in facts["objects"]}  # answers name the vocabulary class
    for chip_id in CHIP_IDS[:8]:
        res = OfflineWriter().write(facts, chip_id)
        cls = [q for q in res.qa if q["task"] == "classification" and _BOX_Q_RE.search(q["question"])]
        assert len(cls) == len(labels)  # one per label present, none without labelled objects
        scene = [q for q in res.qa if q["task"] == "classification" and not _BOX_Q_RE.search(q["question"])]
        assert [q["answer"] for q in scene] == ([scene_type(facts)] if scene_type(facts) else [])
        for q in cls:
            m = re.search(r"\[(\d+), (\d+), (\d+), (\d+)\]", q["question"])
            assert m and "pixel" in q["question"]
            box = [int(v) for v in m.groups()]
            (obj,) = [o for o in facts["objects"] if o["bbox"] == box]
            assert q["answer"] == obj["class"]
        assert {q["answer"] for q in cls} == labels


def test_negatives_come_from_the_labelled_classes() -> None:
    """Negatives only for classes the label file annotates (labels.classes_labelled with count 0); their
    number follows qa.negatives_ratio."""
    facts = fact_sheet("port")
    assert not _qa_for(OfflineWriter().write(facts, CHIP_IDS[0]), "counting", "aircraft")  # not labelled
    facts["labels"]["classes_labelled"] = ["aircraft", "ship", "storage tank"]
    facts["labels"]["counts"].update({"aircraft": 0, "storage tank": 0})
    res = OfflineWriter(qa=QaConfig(negatives_ratio=2)).write(facts, CHIP_IDS[0])
    assert _qa_for(res, "counting", "storage tanks")[0]["answer"] == "0"
    assert _qa_for(res, "detection", "aircraft")[0]["answer"] == "None"
    assert check_text(facts, res.caption_fields, res.qa) == []
    res = OfflineWriter(qa=QaConfig(negatives_ratio=1)).write(facts, CHIP_IDS[0])
    assert len(_qa_for(res, "counting", "aircraft") + _qa_for(res, "counting", "storage tanks")) == 1
    res = OfflineWriter(qa=QaConfig(negatives_ratio=0)).write(facts, CHIP_IDS[0])
    assert not _qa_for(res, "counting", "aircraft") and not _qa_for(res, "counting", "storage tanks")


# -- grounding of individual fields -----------------------------------------------------------------
def test_field_presence_follows_the_facts() -> None:
    w = OfflineWriter()
    ow: dict[str, Any] = w.write(fact_sheet("open_water"), CHIP_IDS[0]).caption_fields
    port: dict[str, Any] = w.write(fact_sheet("port"), CHIP_IDS[0]).caption_fields
    land: dict[str, Any] = w.write(fact_sheet("land"), CHIP_IDS[0]).caption_fields
    assert ow["functionality"] and "vessel" in ow["functionality"].lower()  # detections on water near a place
    assert port["functionality"] and "vessel" in port["functionality"].lower()  # labelled ships
    assert land["functionality"] is None
    assert ow["boundary"] is None and land["boundary"] is None
    # the boundary says that land meets water; the cells are stated once, in the layout
    assert port["boundary"] and "boundary" in port["boundary"] and not re.search(r"\d", port["boundary"])
    assert re.search("[Cc]ells 1, 2 and 4", port["layout"])
    assert "bout 35 %" in port["water"]  # 0.36 -> nearest 5 % ("about" / "About")
    assert "20 %" in port["buildings"]
    assert "bright point target" in ow["targets"] and "ship" not in ow["targets"]
    assert "no bright point targets" in land["targets"].lower()


def test_functionality_needs_a_nearby_place_for_detections() -> None:
    far = fact_sheet("open_water")
    far["place"]["distance_km"] = 80.0
    assert OfflineWriter().write(far, CHIP_IDS[0]).caption_fields["functionality"] is None
    nowhere = fact_sheet("open_water")
    nowhere["place"] = None
    res = OfflineWriter().write(nowhere, CHIP_IDS[0])
    assert res.caption_fields["functionality"] is None
    assert "°" in (res.caption_fields["terrain"] or "")  # located by coordinates instead
    assert check_text(nowhere, res.caption_fields, res.qa) == []


# -- base helpers -----------------------------------------------------------------------------------
def test_render_caption_skips_nulls_in_field_order() -> None:
    fields: dict[str, Any] = {f: None for f in CAPTION_FIELDS}
    fields.update(targets="T.", terrain="A.", water="W.", roads="")
    assert render_caption(fields) == "A. W. T."
    assert render_caption({f: None for f in CAPTION_FIELDS}) == ""


def test_validate_text_names_the_failing_path() -> None:
    res = OfflineWriter().write(fact_sheet("port"), CHIP_IDS[0])
    validate_text(res.caption_fields, res.qa)
    bad: dict[str, Any] = dict(res.caption_fields, targets=5)
    with pytest.raises(ValueError, match=r"caption invalid at \$\.targets"):
        validate_text(bad, res.qa)
    missing = {k: v for k, v in res.caption_fields.items() if k != "roads"}
    with pytest.raises(ValueError, match=r"caption invalid at \$: must contain \['roads'\]"):
        validate_text(missing, res.qa)
    qa = [dict(q) for q in res.qa]
    qa[2]["task"] = "segmentation"
    with pytest.raises(ValueError, match=r"qa invalid at \$\[2\]\.task"):
        validate_text(res.caption_fields, qa)
    qa = [dict(q) for q in res.qa]
    qa[0]["answer"] = ""
    with pytest.raises(ValueError, match=r"qa invalid at \$\[0\]\.answer"):
        validate_text(res.caption_fields, qa)


def test_build_messages_is_one_chat() -> None:
    res = OfflineWriter().write(fact_sheet("two_classes"), CHIP_IDS[1])
    msgs = build_messages(res.caption, res.qa)
    assert len(msgs) == 2 + 2 * len(res.qa)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * (1 + len(res.qa))
    assert "SAR image" in msgs[0]["content"] and "<image>" not in msgs[0]["content"]
    assert msgs[1]["content"] == res.caption
    for i, q in enumerate(res.qa):
        assert msgs[2 + 2 * i] == {"role": "user", "content": q["question"]}
        assert msgs[3 + 2 * i] == {"role": "assistant", "content": q["answer"]}


def test_point_targets_of_unknown_size_get_no_length() -> None:
    """Detections too small to measure (length_m null) are point targets of unknown size in the text,
    and the checker rejects a length the facts do not hold."""
    facts = fact_sheet("open_water")
    for d in facts["detections"]["items"]:
        d["length_m"] = None
    for chip_id in CHIP_IDS[:8]:
        res = OfflineWriter().write(facts, chip_id)
        targets = res.caption_fields["targets"] or ""
        assert "unknown" in targets and not re.search(r"\d+ m\b", targets), targets
        assert check_text(facts, res.caption_fields, res.qa) == []
    bad = dict(res.caption_fields, targets="Two bright point targets stand out. They are 28 m and 92 m long.")
    problems = check_text(facts, bad, res.qa)
    assert problems and all("length / distance '28 m and 92 m' matches nothing" in p for p in problems)
    facts["detections"]["items"][0]["length_m"] = 92.2  # one measured: only its length may be stated
    res = OfflineWriter().write(facts, CHIP_IDS[0])
    assert (
        "92 m" in (res.caption_fields["targets"] or "")
        and check_text(facts, res.caption_fields, res.qa) == []
    )


@pytest.mark.parametrize("name", NAMES)
def test_box_questions_state_the_chip_frame_and_the_checker_holds_them_to_it(name: str) -> None:
    facts = fact_sheet(name)
    w, h = facts["chip"]["width_px"], facts["chip"]["height_px"]
    for chip_id in CHIP_IDS[:8]:
        res = OfflineWriter().write(facts, chip_id)
        boxed = [q for q in res.qa if q["task"] == "detection" or _BOX_Q_RE.search(q["question"])]
        assert boxed and all(f"pixel coordinates of the {w} x {h} image" in q["question"] for q in boxed)
    q = next(q for q in res.qa if q["task"] == "detection")
    wrong = dict(q, question=q["question"].replace(f"{w} x {h} image", "504 x 504 image"))
    assert any("states a 504 x 504 frame" in p for p in check_text(facts, res.caption_fields, [wrong]))
    bare = dict(q, question=q["question"].replace(f"pixel coordinates of the {w} x {h} image", "pixels"))
    assert any("does not state the frame" in p for p in check_text(facts, res.caption_fields, [bare]))
