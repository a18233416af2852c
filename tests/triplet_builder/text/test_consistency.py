"""Tests of the text-vs-facts checker (triplet_builder/text/consistency.py): the offline writer's
output passes, every deliberate corruption of it is caught, and free text in other phrasings (as an
LLM writes it) is judged on its content, not its wording."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from schemas import CAPTION_FIELDS
from triplet_builder.text.base import TextResult
from triplet_builder.text.consistency import (
    HEDGE_WORDS,
    canonical_label,
    check_caption,
    check_qa,
    check_text,
    format_percent,
    round_percent,
)
from triplet_builder.text.offline import OfflineWriter

from .factsheets import FACT_SHEETS, fact_sheet

CHIP_IDS = [f"c0ffee{i:010d}" for i in range(6)]


def _outputs(name: str) -> list[tuple[dict[str, Any], TextResult]]:
    """(facts, writer output) for a few chip ids; each test corrupts copies."""
    facts = fact_sheet(name)
    return [(facts, OfflineWriter().write(facts, chip_id)) for chip_id in CHIP_IDS]


def _fields(**kw: str | None) -> dict[str, str | None]:
    fields: dict[str, str | None] = {f: None for f in CAPTION_FIELDS}
    fields.update(kw)
    return fields


def _has(problems: list[str], *needles: str) -> bool:
    return any(all(n.lower() in p.lower() for n in needles) for p in problems)


@pytest.mark.parametrize("name", sorted(FACT_SHEETS))
def test_writer_output_is_consistent(name: str) -> None:
    for facts, res in _outputs(name):
        assert check_text(facts, res.caption_fields, res.qa) == []


def test_hedge_words_are_exposed() -> None:
    required = {"possibly", "likely", "appears", "seems", "may", "might", "could", "probably", "suggest"}
    assert required <= set(HEDGE_WORDS)


def test_percent_convention() -> None:
    assert [round_percent(f) for f in (0.0, 0.024, 0.025, 0.225, 0.36, 0.97, 0.975, 1.0)] == [
        0, 0, 5, 25, 35, 95, 100, 100,
    ]  # fmt: skip
    assert format_percent(0.0) == "0 %"
    assert format_percent(0.001) == "less than 5 %"
    assert format_percent(0.36) == "about 35 %"
    assert format_percent(0.98) == "more than 95 %"
    assert format_percent(1.0) == "100 %"


# -- one test per corruption ----------------------------------------------------------------------
def test_catches_wrong_count_in_caption() -> None:
    for facts, res in _outputs("port"):
        fields = dict(res.caption_fields)
        targets = re.sub(r"\b(?:5|five|Five)\b(?=(?: labelled)? ships)", "7", fields["targets"] or "")
        assert "7 " in targets, targets
        fields["targets"] = targets
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "targets", "7 ship"), problems


def test_catches_wrong_count_as_a_number_word() -> None:
    facts = fact_sheet("two_classes")
    assert check_caption(facts, _fields(targets="Three ships and four storage tanks are labelled.")) == []
    problems = check_caption(facts, _fields(targets="Three ships and eleven storage tanks are labelled."))
    assert _has(problems, "eleven storage tanks", "11", "4"), problems


def test_catches_wrong_percentage() -> None:
    for facts, res in _outputs("port"):
        fields = dict(res.caption_fields)
        assert re.search(r"[Aa]bout 35 %", fields["water"] or "")
        fields["water"] = re.sub(r"([Aa]bout) 35 %", r"\1 75 %", fields["water"] or "")
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "water", "75 %"), problems


def test_catches_hedge_word() -> None:
    for facts, res in _outputs("port"):
        fields = dict(res.caption_fields)
        fields["targets"] = (fields["targets"] or "") + " They are probably moored."
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "targets", "hedge", "probably"), problems


def test_catches_hedge_in_an_answer_and_refusal() -> None:
    facts, res = _outputs("port")[0]
    qa = [dict(q) for q in res.qa]
    qa[0]["answer"] = "I cannot tell; it might be 5"
    assert _has(check_text(facts, res.caption_fields, qa), "qa[0]", "hedge", "might")
    assert _has(check_text(facts, res.caption_fields, qa), "qa[0]", "refusal")


def test_catches_wrong_water_cell() -> None:
    # the offline writer names the water cells in `layout` only (the `water` field states the share)
    for facts, res in _outputs("port"):
        fields = dict(res.caption_fields)
        assert re.search("[Cc]ells 1, 2 and 4", fields["layout"] or "")
        fields["layout"] = re.sub("([Cc]ells) 1, 2 and 4", r"\1 1, 2 and 9", fields["layout"] or "")
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "layout", "cell 9"), problems


def test_catches_wrong_target_cell() -> None:
    for facts, res in _outputs("port"):
        fields = dict(res.caption_fields)
        assert re.search("[Cc]ells 1, 2, 4 and 5", fields["targets"] or "")
        fields["targets"] = re.sub("([Cc]ells) 1, 2, 4 and 5", r"\1 1, 2, 4 and 7", fields["targets"] or "")
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "targets", "cell 7"), problems


def test_catches_wrong_detection_box() -> None:
    for facts, res in _outputs("two_classes"):
        qa = [dict(q) for q in res.qa]
        i = next(i for i, q in enumerate(qa) if q["task"] == "detection" and q["answer"] != "None")
        items = json.loads(qa[i]["answer"])
        items[0]["bbox_2d"][0] += 8
        qa[i]["answer"] = json.dumps(items)
        problems = check_text(facts, res.caption_fields, qa)
        assert _has(problems, f"qa[{i}]", "matches no"), problems


def test_catches_missing_detection_box() -> None:
    facts, res = _outputs("two_classes")[0]
    qa = [dict(q) for q in res.qa]
    i = next(i for i, q in enumerate(qa) if q["task"] == "detection" and q["answer"] != "None")
    qa[i]["answer"] = json.dumps(json.loads(qa[i]["answer"])[:-1])
    assert _has(check_text(facts, res.caption_fields, qa), f"qa[{i}]", "boxes but the facts have")


def test_catches_wrong_classification() -> None:
    for facts, res in _outputs("two_classes"):
        qa = [dict(q) for q in res.qa]
        for i, q in enumerate(qa):
            if q["task"] == "classification":
                q["answer"] = "plane" if q["answer"] == "ship" else "ship"
                problems = check_text(facts, res.caption_fields, qa)
                assert _has(problems, f"qa[{i}]", "classification", "but the object"), problems


def test_catches_wrong_place_name() -> None:
    for facts, res in _outputs("port"):
        fields = {k: v.replace("Vlissingen", "Rotterdam") if v else v for k, v in res.caption_fields.items()}
        assert "Rotterdam" in (fields["terrain"] or "")
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "terrain", "Rotterdam"), problems


def test_catches_wrong_country() -> None:
    for facts, res in _outputs("land"):
        fields = dict(res.caption_fields)
        fields["terrain"] = (fields["terrain"] or "").replace("Spain", "Portugal")
        problems = check_text(facts, fields, res.qa)
        assert _has(problems, "terrain", "Portugal"), problems


def test_catches_detection_answer_that_is_not_json() -> None:
    for facts, res in _outputs("port"):
        qa = [dict(q) for q in res.qa]
        i = next(i for i, q in enumerate(qa) if q["task"] == "detection" and q["answer"] != "None")
        qa[i]["answer"] = "ships at [20, 30, 34, 36] and [150, 40, 168, 48]"
        problems = check_text(facts, res.caption_fields, qa)
        assert _has(problems, f"qa[{i}]", "neither None nor JSON"), problems


def test_catches_wrong_counting_and_localization_answers() -> None:
    facts, res = _outputs("port")[0]
    qa = [dict(q) for q in res.qa]
    ic = next(i for i, q in enumerate(qa) if q["task"] == "counting" and q["answer"] == "5")
    il = next(i for i, q in enumerate(qa) if q["task"] == "localization" and q["answer"] == "1,2,4,5")
    qa[ic]["answer"] = "4"
    qa[il]["answer"] = "1,2,4"
    problems = check_text(facts, res.caption_fields, qa)
    assert _has(problems, f"qa[{ic}]", "counting answer 4", "5 ship")
    assert _has(problems, f"qa[{il}]", "localization answer '1,2,4'")


@pytest.mark.parametrize(
    ("task", "answer", "needle"),
    [
        ("counting", "five", "not a bare integer"),
        ("counting", "5 ships", "not a bare integer"),
        ("localization", "1, 2, 4, 5", "is not 'None' or ascending"),
        ("localization", "2,1,4,5", "not strictly ascending"),
        ("detection", "[]", "non-empty JSON list"),
        ("detection", '[{"bbox": [20, 30, 34, 36], "label": "ship"}]', "exactly bbox_2d and label"),
        ("detection", '[{"bbox_2d": [20, 30, 34], "label": "ship"}]', "4 numbers"),
    ],
)
def test_catches_answers_in_the_wrong_format(task: str, answer: str, needle: str) -> None:
    facts = fact_sheet("port")
    problems = check_qa(
        facts, [{"task": task, "question": "Where are the ships in this image?", "answer": answer}]
    )
    assert _has(problems, needle), problems


def test_negatives_only_for_classes_the_facts_looked_for() -> None:
    """Issue #9: a class asked about with answer 0 / None only when the facts list it as looked for
    (labels.classes_labelled, the CFAR detections); an unknown class is never answered."""
    port = fact_sheet("port")  # labels: ship only
    unknown = [{"task": "counting", "question": "How many giraffes?", "answer": a} for a in ("3", "0")]
    assert all(_has([p], "names no known class") for p in check_qa(port, unknown))
    assert len(check_qa(port, unknown)) == 2
    windmills = [  # a vocabulary class the label file does not annotate
        {"task": "counting", "question": "How many wind turbines?", "answer": "0"},
        {"task": "localization", "question": "Which cells hold wind turbines?", "answer": "None"},
    ]
    assert len([p for p in check_qa(port, windmills) if "no negative" in p]) == 2
    port["labels"]["classes_labelled"].append("wind turbine")
    port["labels"]["counts"]["wind turbine"] = 0
    assert check_qa(port, windmills) == []
    # the CFAR detector looked at the whole chip: "no bright point targets" is a fact
    land = fact_sheet("land")
    det = [{"task": "counting", "question": "How many bright point targets are there?", "answer": "0"}]
    assert check_qa(land, det) == []
    assert _has(check_qa(land, [dict(det[0], question="How many ships are there?")]), "no negative")


def test_catches_acquisition_errors() -> None:
    facts = fact_sheet("port")
    ok = "Sentinel-1A imaged the chip on 14 May 2023 in spring on an ascending pass in VV and VH."
    assert check_caption(facts, _fields(terrain=ok)) == []
    for wrong, needle in [
        ("Sentinel-1A imaged the chip on 15 May 2023.", "acquisition date"),
        ("The chip was imaged in 2022.", "acquisition year"),
        ("The chip was imaged in winter.", "season"),
        ("The chip was imaged on a descending pass.", "orbit"),
        ("The chip was imaged in HH polarisation.", "polarisation HH"),
        ("Sentinel-1B imaged the chip.", "sensor"),
        ("The chip lies 2.3 km west of Vlissingen.", "the facts say E"),
        ("The chip lies 12 km east of Vlissingen.", "12 km"),
        ("The chip is 5000 m wide.", "5000 m"),
        ("Backscatter averages -15.2 dB.", "dB"),
        ("The chip is centred at 52.10° N.", "coordinate"),
    ]:
        assert _has(check_caption(facts, _fields(terrain=wrong)), needle), wrong


def test_catches_unsupported_claims() -> None:
    ow, port = fact_sheet("open_water"), fact_sheet("port")
    assert _has(check_caption(port, _fields(roads="A road runs along the quay.")), "roads", "must be null")
    assert _has(check_caption(port, _fields(functionality="This is a busy harbour.")), "harbour")
    assert _has(
        check_caption(ow, _fields(boundary="A shoreline crosses the chip.")), "no land/water boundary"
    )
    assert _has(check_caption(ow, _fields(water="There is no open water here.")), "denies water")


def test_no_place_means_no_place_names() -> None:
    facts = fact_sheet("open_water")
    facts["place"] = None
    problems = check_caption(facts, _fields(terrain="The chip lies 18 km north-west of Den Helder."))
    assert _has(problems, "Den") and _has(problems, "18 km")


def test_may_the_month_is_not_a_hedge() -> None:
    facts = fact_sheet("port")
    assert check_caption(facts, _fields(terrain="The chip was imaged on May 14, 2023.")) == []
    assert _has(check_caption(facts, _fields(terrain="The chip may show ships.")), "hedge", "may")


# -- free text in other phrasings ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "field", "text"),
    [
        (
            "port",
            "targets",
            "Five vessels are moored in the western waters; two of them sit in the top-left cell.",
        ),
        ("port", "targets", "There are 5 ships: two ships in cell 1, one ship in cell 2 and one in cell 4."),
        ("port", "targets", "No ships are present in cells 7, 8 and 9."),
        ("port", "water", "Water accounts for roughly 36% of the scene and dominates the top-left corner."),
        ("port", "layout", "Cells 1, 2 and 4 contain water, while cells 6-9 are dry land."),
        (
            "port",
            "buildings",
            "Strong scatterers cover 20 percent of the chip, concentrated in cells 3 to 8.",
        ),
        (
            "port",
            "terrain",
            "Imaged on May 14, 2023, the chip lies in the Netherlands, 2.3 km east of Vlissingen.",
        ),
        ("two_classes", "targets", "The tanks sit in cells 1, 4 and 7, the ships in cells 6 and 9."),
        (
            "two_classes",
            "targets",
            "The 3 vessels lie in the east, in cells 6 and 9; the 4 storage tanks in the west.",
        ),
        ("open_water", "targets", "A pair of bright point targets lie on the water, measuring 92 and 103 m."),
        ("open_water", "terrain", "About 95% of the image is open water, the rest being land (5%)."),
        ("land", "distribution", "Cell 9 lies largely outside the scene and cell 8 partly."),
        ("land", "targets", "No bright point targets or other targets are visible."),
    ],
)
def test_accepts_correct_free_text(name: str, field: str, text: str) -> None:
    assert check_caption(fact_sheet(name), _fields(**{field: text})) == []


@pytest.mark.parametrize(
    ("name", "field", "text", "needle"),
    [
        ("port", "targets", "Six vessels are moored in the western waters.", "6 ship"),
        ("port", "targets", "There are two ships in cell 5.", "in cells 5"),
        ("port", "targets", "No ships are present in cell 1.", "cell 1"),
        ("port", "targets", "Ships are visible in cells 1, 2 and 3.", "cell 3"),
        ("port", "water", "Water accounts for roughly 60% of the scene.", "60%"),
        ("port", "water", "Water dominates the bottom-right corner.", "cell 9"),
        ("port", "buildings", "Strong scatterers concentrate in cells 1 and 9.", "cell 1"),
        ("port", "targets", "The longest ship is 300 m long.", "300 m"),
        ("port", "layout", "Cell 12 is water.", "cell 12"),
        ("two_classes", "targets", "The 3 vessels lie in cells 6 and 8.", "cell 8"),
        ("two_classes", "targets", "Cells 1 and 2 hold the storage tanks.", "cell 2"),
        ("land", "targets", "Three bright point targets stand out.", "3 bright point target"),
        ("land", "water", "Cell 3 holds open water.", "cell 3"),
        ("land", "distribution", "Cell 5 lies outside the scene.", "cell 5"),
        ("land", "terrain", "The area near Tomelloso in Portugal was imaged in summer.", "Portugal"),
        # bounds at their edges: water is 36 % of the port chip
        ("port", "water", "Water covers less than 30 % of the chip.", "30 %"),
        ("port", "water", "Water covers more than 40 % of the chip.", "40 %"),
        ("port", "water", "Water covers about 40 % of the chip.", "40 %"),
        ("port", "water", "Cell 1 holds no water.", "cell 1"),  # cell 1: water fraction 0.92
        ("port", "terrain", "The mean backscatter is -12.4 dB.", "-12.4 dB"),  # mean -11.8 dB
        ("two_classes", "layout", "The chip covers 1.5 x 2 km.", "1.5 x 2 km"),  # 2 x 1.5 km: swapped
    ],
)
def test_flags_wrong_free_text(name: str, field: str, text: str, needle: str) -> None:
    problems = check_caption(fact_sheet(name), _fields(**{field: text}))
    assert _has(problems, field, needle), problems


def test_class_names_are_canonical() -> None:
    assert canonical_label("Vessels") == canonical_label("ship") == "ship"
    assert canonical_label("storage_tanks") == "storage tank"
    assert canonical_label("aircraft") == canonical_label("planes") == "aircraft"  # the vocabulary name
    assert canonical_label("bright point targets") == "bright point target"
    facts = fact_sheet("port")
    qa = [{"task": "counting", "question": "How many vessels are in the image?", "answer": "5"}]
    assert check_qa(facts, qa) == []


@pytest.mark.parametrize(
    ("backscatter", "text", "bad"),
    [
        ("gamma0", "A VV polarisation, gamma0 backscatter scene.", False),
        ("gamma0", "A VV polarisation, sigma0 backscatter scene.", True),
        ("sigma0", "Calibrated sigma nought over the delta.", False),
        ("unknown", "A VV polarisation, sigma0 backscatter scene.", True),
        ("unknown", "Backscatter as γ0 in dB.", True),
        ("unknown", "A VV polarisation, SAR backscatter scene.", False),
    ],
)
def test_catches_a_backscatter_convention_the_facts_do_not_state(
    backscatter: str, text: str, bad: bool
) -> None:
    facts = fact_sheet("port")
    facts["acquisition"]["backscatter"] = backscatter
    problems = check_caption(facts, _fields(terrain=text))
    assert _has(problems, "terrain", "backscatter " + backscatter) is bad, problems


def test_offline_writer_names_no_convention_when_unknown() -> None:
    facts = fact_sheet("port")
    facts["acquisition"]["backscatter"] = "unknown"
    for chip_id in CHIP_IDS:
        res = OfflineWriter().write(facts, chip_id)
        assert check_text(facts, res.caption_fields, res.qa) == []
        assert not re.search(r"sigma|gamma|beta", json.dumps([res.caption_fields, res.qa]), re.I)


def test_the_cross_pol_water_threshold_is_a_stated_value() -> None:
    facts = fact_sheet("port")
    text = _fields(water="Water pixels are darker than -23 dB in the second band.")
    assert _has(check_caption(facts, text), "water", "-23")  # not in the facts
    facts["surface"]["water_threshold_cross_db"] = -23.0
    assert not _has(check_caption(facts, text), "water", "-23")


# -- under-counts: saying less than the facts is as wrong as saying more -------------------------
@pytest.mark.parametrize(
    ("name", "field", "text", "needle"),
    [
        # labelled objects of each class, and the unclassified detections
        ("port", "targets", "No ships are visible.", "0 ship"),
        ("port", "targets", "Three ships are moored.", "3 ship"),
        ("port", "targets", "There are no targets.", "0 target"),
        ("two_classes", "targets", "Three ships and no storage tanks are labelled.", "0 storage tank"),
        ("two_classes", "targets", "Three ships and two storage tanks are labelled.", "2 storage tank"),
        ("open_water", "targets", "No bright point targets are visible.", "0 bright point target"),
        ("open_water", "targets", "One bright point target lies on the water.", "1 bright point target"),
        # surface fractions, stated as numbers and denied outright
        ("port", "water", "Water covers about 10 % of the chip.", "10 %"),
        ("port", "water", "There is no water.", "denies water"),
        ("port", "terrain", "The chip is entirely land.", "denies water"),
        ("port", "terrain", "The chip is all open water.", "denies land"),
        ("port", "buildings", "Strong scatterers cover about 5 % of the chip.", "5 %"),
        ("port", "buildings", "There are no strong scatterers.", "denies bright"),
        # cells: an exclusive list that leaves out cells holding the thing (port: water >= 0.1 in
        # cells 1-5, ships in 1, 2, 4, 5, bright >= 0.05 in 2-8)
        ("port", "water", "Water is only in cells 1 and 2.", "cells [3, 4, 5]"),
        ("port", "targets", "Ships are only in cells 1 and 2.", "cells [4, 5]"),
        ("port", "buildings", "Strong scatterers lie only in cell 3.", "cells [2, 4, 5, 6, 7, 8]"),
        ("two_classes", "targets", "The storage tanks sit only in cell 1.", "cells [4, 7]"),
        # the land/water boundary the facts have (port: cells 1, 2, 4 mostly water, 3, 5-9 land)
        ("port", "boundary", "There is no land/water boundary in the chip.", "boundary"),
        ("port", "boundary", "No shoreline crosses the chip.", "boundary"),
    ],
)
def test_flags_under_claims(name: str, field: str, text: str, needle: str) -> None:
    problems = check_caption(fact_sheet(name), _fields(**{field: text}))
    assert _has(problems, field, needle), problems


@pytest.mark.parametrize(
    ("name", "field", "text"),
    [
        ("port", "water", "Water is only in cells 1, 2, 3, 4 and 5."),
        ("port", "targets", "Ships are only in cells 1, 2, 4 and 5."),
        ("port", "boundary", "A shoreline crosses the chip."),
        ("land", "terrain", "The chip is entirely land."),
    ],
)
def test_accepts_complete_exclusive_and_total_claims(name: str, field: str, text: str) -> None:
    assert check_caption(fact_sheet(name), _fields(**{field: text})) == []


@pytest.mark.parametrize("task", ["counting", "localization", "detection"])
@pytest.mark.parametrize("name", ["port", "two_classes", "open_water"])
def test_flags_under_claiming_answers(name: str, task: str) -> None:
    """Every negative or short answer to a question about present objects is rejected."""
    facts, res = _outputs(name)[0]
    asked = [(i, q) for i, q in enumerate(res.qa) if q["task"] == task and q["answer"] not in ("0", "None")]
    assert asked, f"the writer asks no positive {task} question on {name}"
    for i, q in asked:
        if task == "counting":
            wrong = ["0", str(int(q["answer"]) - 1)]
        elif task == "localization":
            wrong = ["None", ",".join(q["answer"].split(",")[:-1]) or "None"]
        else:
            wrong = ["None", json.dumps(json.loads(q["answer"])[:-1]) if "}, {" in q["answer"] else "None"]
        for answer in wrong:
            qa = [dict(x) for x in res.qa]
            qa[i]["answer"] = answer
            assert _has(check_text(facts, res.caption_fields, qa), f"qa[{i}]"), (q, answer)


@pytest.mark.parametrize("name", sorted(FACT_SHEETS))
def test_hand_written_replies_pass_and_their_wrong_twins_do_not(name: str) -> None:
    """The loopback LLM server's hand-written replies (tests/servers/openai_fixtures.py): text nobody
    derived from the checker or the offline writer. The good ones pass; the wrong ones are caught."""
    from tests.servers.openai_fixtures import answer, replies_for
    from triplet_builder.text.llm_prompt import qa_plan

    facts = fact_sheet(name)
    replies = replies_for(facts)
    assert replies is not None
    assert check_caption(facts, replies.caption) == []
    assert _has(check_caption(facts, replies.wrong_caption), "targets")
    for chip_id in CHIP_IDS:
        plan = qa_plan(facts, chip_id)
        assert check_qa(facts, [answer(facts, replies, item) for item in plan]) == []
        wrong = [answer(facts, replies, item, wrong=True) for item in plan]
        assert _has(check_qa(facts, wrong), "counting answer"), chip_id
