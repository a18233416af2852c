"""The evaluation metrics against hand-computed cases, edge cases of model output included."""

from __future__ import annotations

import json
import math

import pytest
import sacrebleu

from model.eval.metrics import (
    bleu4,
    box_iou,
    classification_accuracy,
    counting_accuracy,
    detection_prf,
    evaluate,
    localization_scores,
    normalize_label,
    parse_cells,
    parse_count,
    parse_detections,
    report_table,
    rouge_l,
)


def det(*boxes: tuple[list[float], str]) -> str:
    return json.dumps([{"bbox_2d": b, "label": lab} for b, lab in boxes])


# == counting ======================================================================================
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("There are 12 ships.", 12),
        ("  7\n", 7),
        ("three planes", 3),
        ("None", 0),
        ("no targets", 0),
        ("I count 2 ships, maybe 3", 2),
        ("3.5", None),
        ("many", None),
    ],
)
def test_parse_count(text: str, value: int | None) -> None:
    assert parse_count(text) == value


def test_counting_accuracy_exact_integer() -> None:
    preds = ["3", "There are 4 ships.", "five", "garbage", "0"]
    refs = ["3", "5", "5", "1", "0"]
    assert counting_accuracy(preds, refs) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="one per reference"):
        counting_accuracy(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="holds no integer"):
        counting_accuracy(["1"], ["many"])


# == localization ==================================================================================
def test_parse_cells() -> None:
    assert parse_cells("1,2,7") == {1, 2, 7}
    assert parse_cells("Cells 1 and 9 of the 3 x 3 grid.") == {1, 9}
    assert parse_cells("None") == set()
    assert parse_cells("cell 10") == set()


def test_localization_hand_computed() -> None:
    # ref {1,2,3,4}:
    #   {1,2,3,4}     exact                    -> 100 yes, 50 yes, top1 yes
    #   {1,2}         2 right (half), 0 wrong  -> 100 no,  50 yes, top1 yes
    #   {1,2,5,6}     2 right, 2 wrong (equal) -> 100 no,  50 yes, top1 yes
    #   {1,2,5,6,7}   2 right, 3 wrong         -> 100 no,  50 no,  top1 yes
    #   {1}           1 right < half           -> 100 no,  50 no,  top1 yes
    #   {9}           0 right                  -> all no
    #   "garbage"     nothing                  -> all no
    preds = ["1,2,3,4", "1,2", "1,2,5,6", "1,2,5,6,7", "1", "9", "garbage"]
    refs = ["1,2,3,4"] * 7
    s = localization_scores(preds, refs)
    assert s == {
        "acc@100": pytest.approx(1 / 7),
        "acc@50": pytest.approx(3 / 7),
        "top1": pytest.approx(5 / 7),
    }


def test_localization_empty_reference_needs_an_empty_prediction() -> None:
    s = localization_scores(["None", "5"], ["None", "None"])
    assert s == {"acc@100": 0.5, "acc@50": 0.5, "top1": 0.5}
    # a single reference cell: half of 1 is satisfied by that cell only
    assert localization_scores(["5", "4,5"], ["5", "5"])["acc@50"] == 1.0
    assert localization_scores(["4,6,5"], ["5"])["acc@50"] == 0.0


# == classification ================================================================================
def test_classification_normalised_match() -> None:
    assert normalize_label("The Ship.") == "ship"
    assert normalize_label("cargo_ships") == "cargo ship"
    assert normalize_label("Glass") == "glass"
    preds = ["Ship", "a plane.", "oil-tanker", "plane", ""]
    refs = ["ship", "plane", "oil tanker", "ship", "ship"]
    assert classification_accuracy(preds, refs) == pytest.approx(3 / 5)


# == detection =====================================================================================
def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        '[{"bbox_2d": [1, 2, 3, 4], "label": "ship"}]',
        '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "ship"}]\n```',
        "[{'bbox_2d': [1, 2, 3, 4], 'label': 'ship'}]",
        'Here you go: [{"bbox_2d": [1, 2, 3, 4], "label": "ship"}] Hope this helps [sic].',
        '{"bbox_2d": [1, 2, 3, 4], "label": "ship"}',
        '[{"bbox": [3, 4, 1, 2], "label": "ship"}]',  # swapped corners are ordered
    ],
)
def test_parse_detections_tolerates_model_formats(text: str) -> None:
    assert parse_detections(text) == [((1.0, 2.0, 3.0, 4.0), "ship")]


def test_parse_detections_none_and_garbage() -> None:
    assert parse_detections("None") == []
    assert parse_detections("[]") == []
    assert parse_detections("I cannot see any ship") is None
    assert parse_detections('[{"bbox_2d": [1, 2, 3, 4], "label": ') is None
    assert parse_detections('[{"bbox_2d": [1, 2, 3], "label": "ship"}, {"bbox_2d": [0, 0, 1, 1]}]') == [
        ((0.0, 0.0, 1.0, 1.0), "")
    ]


def test_detection_prf_hand_computed() -> None:
    # image 1: refs A (0,0,10,10) ship, B (20,20,30,30) ship
    #   preds: (0,0,10,10) ship [IoU 1 with A]; (1,0,11,10) ship [IoU 9/11 with A, but A is taken: FP];
    #          (20,20,30,30) plane [label differs from B: FP]
    #   -> tp 1, fp 2, fn 1
    # image 2: ref (0,0,10,10) plane; prediction unparseable -> fn 1 (no fp)
    # image 3: ref None; pred (0,0,5,5) ship -> fp 1
    preds = [
        det(([0, 0, 10, 10], "ship"), ([1, 0, 11, 10], "ship"), ([20, 20, 30, 30], "plane")),
        "the plane is at the top",
        det(([0, 0, 5, 5], "ship")),
    ]
    refs = [det(([0, 0, 10, 10], "ship"), ([20, 20, 30, 30], "ship")), det(([0, 0, 10, 10], "plane")), "None"]
    r = detection_prf(preds, refs, iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 3, 2)
    assert r["precision"] == pytest.approx(1 / 4)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))


def test_detection_iou_threshold_and_greedy_one_to_one() -> None:
    ref = det(([0, 0, 10, 10], "ship"))
    half = det(([5, 0, 15, 10], "ship"))  # IoU 1/3
    assert detection_prf([half], [ref], iou=0.25)["f1"] == 1.0
    assert detection_prf([half], [ref], iou=0.5)["f1"] == 0.0
    # greedy by IoU: the better prediction takes the box even when listed second
    refs = [det(([0, 0, 10, 10], "ship"), ([8, 0, 18, 10], "ship"))]
    preds = [det(([4, 0, 14, 10], "ship"), ([0, 0, 10, 10], "ship"))]
    # IoUs: p0-r0 6/14, p0-r1 6/14, p1-r0 1, p1-r1 2/18 -> p1-r0 first, then p0-r1 (0.43 >= 0.25)
    assert detection_prf(preds, refs, iou=0.25)["tp"] == 2
    assert detection_prf(preds, refs, iou=0.5)["tp"] == 1


def test_detection_all_empty_is_perfect() -> None:
    assert detection_prf(["None", "[]"], ["None", "None"]) == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "tp": 0,
        "fp": 0,
        "fn": 0,
    }
    assert detection_prf(["None"], [det(([0, 0, 1, 1], "ship"))])["recall"] == 0.0


# == captions ======================================================================================
def test_bleu4_matches_sacrebleu_corpus_score() -> None:
    preds = ["the port lies on the river mouth", "flat fields around a lagoon"]
    refs = ["the port lies at the river mouth", "flat fields surround a lagoon"]
    assert bleu4(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    assert bleu4(refs, refs) == pytest.approx(1.0)
    assert bleu4(["completely different words here"], ["the port lies at the river mouth"]) == 0.0


def test_rouge_l_hand_computed() -> None:
    # LCS("the cat sat", "the cat sat on the mat") = 3: P = 3/3, R = 3/6, F = 2/3
    assert rouge_l(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert rouge_l(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)


# == evaluate and report ===========================================================================
def test_evaluate_groups_by_task_and_report_table_renders_models() -> None:
    records = [
        {"task": "counting", "prediction": "2", "reference": "2"},
        {"task": "counting", "prediction": "1", "reference": "2"},
        {"task": "localization", "prediction": "1,2", "reference": "1,2"},
        {"task": "classification", "prediction": "Ship", "reference": "ship"},
        {
            "task": "detection",
            "prediction": det(([0, 0, 10, 10], "ship")),
            "reference": det(([5, 0, 15, 10], "ship")),
        },
        {"task": "caption", "prediction": "a b c d e", "reference": "a b c d e"},
    ]
    res = evaluate(records)
    assert res["counting"] == {"accuracy": 0.5, "n": 2.0}
    assert res["localization"]["acc@100"] == 1.0
    assert res["classification"]["accuracy"] == 1.0
    assert res["detection"]["f1@0.25"] == 1.0 and res["detection"]["f1@0.5"] == 0.0
    assert res["caption"]["bleu4"] == pytest.approx(1.0) and res["caption"]["rouge_l"] == 1.0
    other = evaluate([{"task": "counting", "prediction": "2", "reference": "2"}])
    table = report_table({"TLM": res, "no TLM": other})
    lines = table.strip().splitlines()
    assert lines[0] == "| task | metric | TLM | no TLM |"
    assert "| counting | accuracy | 50.00 | 100.00 |" in lines
    assert "| counting | n | 2 | 1 |" in lines
    assert "| localization | acc@100 | 100.00 | - |" in lines
    with pytest.raises(ValueError, match="unknown task"):
        evaluate([{"task": "segmentation", "prediction": "", "reference": ""}])
    with pytest.raises(ValueError, match="lacks"):
        evaluate([{"task": "counting", "prediction": "1"}])
    assert math.isnan(localization_scores([], [])["top1"])
