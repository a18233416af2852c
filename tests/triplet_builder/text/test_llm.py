"""Tests of the LLM text writer (triplet_builder/text/llm.py) and the LLM path of the text stage, through
the REAL openai client against the loopback OpenAI-compatible server of tests/servers/openai_compat.py
(faults injected per test)."""

from __future__ import annotations

import io
import json
import logging
import pickle
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.executor import plan
from pipelines.stages import TaskSpec, run_task
from schemas.codec import Stretch, encode_chip
from tests.conftest import ROOT, port_scene
from tests.servers.openai_compat import OpenAICompatServer, decode_images, openai_server
from tests.servers.openai_fixtures import replies_for
from triplet_builder.config import LlmConfig, TextConfig, load_region
from triplet_builder.record import ChipRecord, Window, chip_id_for
from triplet_builder.stages.base import Stats, run_stages
from triplet_builder.stages.filter import Filter
from triplet_builder.stages.text import WriteText
from triplet_builder.text.base import validate_text
from triplet_builder.text.consistency import check_text
from triplet_builder.text.llm import NO_KEY_PLACEHOLDER, LlmError, LlmWriter, TextRejected
from triplet_builder.text.llm_prompt import load_prompt, parse_reply, qa_plan

from .factsheets import FACT_SHEETS, fact_sheet

DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
SECRET = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0-DO-NOT-LEAK"
KEY_ENV = "SAR_TRIPLETS_TEST_LLM_KEY"
NAMES = sorted(FACT_SHEETS)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def serve_llm(
    faults: dict[str, list[str]] | None = None, *, api_key: str | None = SECRET, **kw: Any
) -> AbstractContextManager[OpenAICompatServer]:
    """The loopback server, checking the test key like the real API."""
    return openai_server(faults, api_key=api_key, **kw)


def llm_cfg(url: str, **kw: Any) -> LlmConfig:
    base: dict[str, Any] = {
        "model": "loopback/test-model",
        "base_url": f"{url}/v1",
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_retries": 3,
    }
    return LlmConfig(**(base | kw))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "llm"


def writer(url: str, cache: Path, **kw: Any) -> LlmWriter:
    return LlmWriter(llm_cfg(url, **kw), cache_dir=cache)


def parts(log: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    return [e for e in log if e["part"] == part]


# -- the good path ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_good_path_validates_and_passes_the_checker(name: str, cache: Path) -> None:
    facts = fact_sheet(name)
    with serve_llm() as srv:
        w = writer(srv.url, cache)
        res = w.write(facts, f"chip-{name}")
        w.close()
    validate_text(res.caption_fields, res.qa)
    assert check_text(facts, res.caption_fields, res.qa) == []
    assert res.caption and res.caption_fields["roads"] is None
    assert len(res.qa) == len(qa_plan(facts, f"chip-{name}"))
    assert w.name == "loopback/test-model" and w.prompt_version == load_prompt().version == "fusar-geovl/1.2"
    assert [e["part"] for e in sorted(srv.log, key=lambda e: e["part"])] == ["caption", "qa"]
    assert {e["source"] for e in srv.log} == {"fixture"}  # hand-written replies, not our own code's
    fixture = replies_for(facts)
    assert fixture is not None
    assert {k: v for k, v in res.caption_fields.items()} == fixture.caption
    assert {e["response_format"] for e in srv.log} == {"json_schema"}
    assert all(e["authorization"] == f"Bearer {SECRET}" for e in srv.log)
    c = w.take_counters()
    assert c["requests"] == 2 and c["retries"] == 0 and c["prompt_tokens"] > 0 and c["completion_tokens"] > 0


def test_the_request_carries_the_configured_model_sampling_system_prompt_and_strict_schema(
    cache: Path,
) -> None:
    """What goes over the wire: text.llm's model, temperature and max_tokens (not the defaults), the system
    prompt of the prompt file, and a strict json_schema reply format."""
    with serve_llm() as srv:
        w = writer(srv.url, cache, model="loopback/other-model", temperature=0.7, max_tokens=1500)
        w.write(fact_sheet("port"), "c")
        w.close()
    system = load_prompt().system.split("$")[0].strip()[:40]  # its opening words, before any placeholder
    assert len(srv.log) == 2 and system
    for e in srv.log:
        assert (e["model"], e["temperature"], e["max_tokens"]) == ("loopback/other-model", 0.7, 1500)
        assert e["response_format"] == "json_schema" and e["strict"] is True
        assert len(e["system"]) == 1 and e["system"][0].startswith(system)


def test_the_prompt_carries_only_the_fact_sheet_and_the_checker_rules(cache: Path) -> None:
    facts = fact_sheet("port")
    with serve_llm() as srv:
        writer(srv.url, cache).write(facts, "c")
    cap = parts(srv.log, "caption")[0]["last_user"]
    block = cap.split("<facts>")[1].split("</facts>")[0]
    assert json.loads(block) == facts
    for step in (
        "Place",
        "Geographic context",
        "Regional function",
        "SAR scattering",
        "Targets",
        "Consistency check",
    ):
        assert step in cap


# -- retries ----------------------------------------------------------------------------------------
def test_invalid_json_then_good_is_retried(cache: Path) -> None:
    facts = fact_sheet("open_water")
    with serve_llm({"caption": ["invalid_json"]}) as srv:
        w = writer(srv.url, cache)
        res = w.write(facts, "c")
    assert check_text(facts, res.caption_fields, res.qa) == []
    assert [e["action"] for e in parts(srv.log, "caption")] == ["invalid_json", "good"]
    assert w.take_counters()["retries"] == 1


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout"])
def test_transient_errors_are_retried(fault: str, cache: Path) -> None:
    facts = fact_sheet("land")
    # a short deadline only where the fault is a deadline: a loaded machine answers well within 30 s
    with serve_llm({"qa": [fault, fault]}, sleep_s=1.5) as srv:
        w = writer(srv.url, cache, timeout_s=0.6 if fault == "timeout" else 30.0)
        res = w.write(facts, "c")
    assert check_text(facts, res.caption_fields, res.qa) == []
    actions = [e["action"] for e in parts(srv.log, "qa")]
    # the two faults, then good replies (more than one only if a good reply ran past 0.6 s)
    assert actions[:2] == [fault, fault] and len(actions) >= 3 and set(actions[2:]) == {"good"}, actions
    assert w.take_counters()["retries"] == len(srv.log) - 2  # every request but the two first ones


@pytest.mark.parametrize(("fault", "reason", "needle"), [
    ("429", "llm_unavailable", "HTTP 429"),
    ("500", "llm_unavailable", "HTTP 500"),
    ("timeout", "llm_unavailable", "timed out after 0.6 s"),
    ("invalid_json", "llm_invalid_output", "invalid reply"),
])  # fmt: skip
def test_never_good_is_a_bounded_clear_reject(fault: str, reason: str, needle: str, cache: Path) -> None:
    with serve_llm({"caption": [fault] * 10}, sleep_s=1.2) as srv:
        w = writer(srv.url, cache, timeout_s=0.6 if fault == "timeout" else 30.0, max_retries=2)
        with pytest.raises(TextRejected) as info:
            w.write(fact_sheet("port"), "c")
    assert info.value.reason == reason
    assert needle in info.value.detail and "gave up after 3 attempts" in info.value.detail
    assert len(parts(srv.log, "caption")) == 3  # 1 + max_retries, not one more
    assert all(
        json.loads(p.read_text())["part"] == "qa" for p in cache.rglob("*.json")
    )  # no bad reply cached


def test_truncated_reply_is_rejected_without_retries(cache: Path) -> None:
    with serve_llm({"qa": ["truncated"]}) as srv:
        with pytest.raises(TextRejected) as info:
            writer(srv.url, cache).write(fact_sheet("port"), "c")
    assert info.value.reason == "llm_invalid_output" and "max_tokens" in info.value.detail
    assert len(parts(srv.log, "qa")) == 1


def test_authentication_error_stops_and_never_shows_the_key(cache: Path) -> None:
    with serve_llm({"*": ["401"] * 4}) as srv:
        with pytest.raises(LlmError) as info:
            writer(srv.url, cache).write(fact_sheet("port"), "c")
    assert "HTTP 401" in str(info.value) and KEY_ENV in str(info.value) and SECRET not in str(info.value)


def test_a_wrong_key_is_refused_by_the_server_and_never_shown(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-0000000000000000000000000000-DO-NOT-LEAK"
    monkeypatch.setenv(KEY_ENV, wrong)
    with serve_llm() as srv:
        with pytest.raises(LlmError) as info:
            writer(srv.url, cache).write(fact_sheet("port"), "c")
    assert "HTTP 401" in str(info.value) and KEY_ENV in str(info.value)
    assert wrong not in str(info.value) and SECRET not in str(info.value)
    assert srv.log and {e["action"] for e in srv.log} == {"refused"}
    assert {e["authorization"] for e in srv.log} == {f"Bearer {wrong}"}


def test_falls_back_when_the_server_refuses_json_schema(cache: Path) -> None:
    facts = fact_sheet("two_classes")
    with serve_llm(refuse_json_schema=True) as srv:
        w = writer(srv.url, cache)
        res = w.write(facts, "c")
    assert check_text(facts, res.caption_fields, res.qa) == []
    assert srv.log[0]["response_format"] == "json_schema" and srv.log[-1]["response_format"] == "json_object"
    assert {e["response_format"] for e in srv.log} == {"json_schema", "json_object"}
    assert w.take_counters()["param_fallbacks"] == 1


def test_adapts_to_max_completion_tokens_and_rejects_other_bad_requests(cache: Path) -> None:
    facts = fact_sheet("port")
    with serve_llm(require_max_completion_tokens=True) as srv:
        w = writer(srv.url, cache)
        res = w.write(facts, "c")
        assert check_text(facts, res.caption_fields, res.qa) == []
        assert w.take_counters()["param_fallbacks"] == 1
        n = len(srv.log)
        w.write(fact_sheet("land"), "c")  # remembered: no second refusal
        assert len(srv.log) == n + 2
    with serve_llm({"caption": ["400"]}) as srv:
        with pytest.raises(TextRejected) as info:
            writer(srv.url, cache / "2").write(facts, "c")
    assert info.value.reason == "llm_bad_request" and "HTTP 400" in info.value.detail
    assert len(parts(srv.log, "caption")) == 1


def test_parse_reply_accepts_fenced_and_chatty_json_and_rejects_the_rest() -> None:
    obj = {"qa": [{"task": "counting", "question": "How many ships?", "answer": "2"}]}
    assert parse_reply("```json\n" + json.dumps(obj) + "\n```", "qa") == obj
    assert parse_reply("Here it is: " + json.dumps(obj) + " Done.", "qa") == obj
    with pytest.raises(ValueError, match="no JSON object"):
        parse_reply("two ships", "qa")
    with pytest.raises(ValueError, match=r"llm_qa invalid at \$\.qa\[0\]\.task"):
        parse_reply(json.dumps({"qa": [{"task": "count", "question": "q", "answer": "2"}]}), "qa")


# -- the checker: repair, reject ------------------------------------------------------------------
def test_hallucinated_count_is_repaired_with_the_findings(cache: Path) -> None:
    facts = fact_sheet("open_water")
    with serve_llm({"caption": ["hallucinate"]}) as srv:
        w = writer(srv.url, cache, repair_attempts=1)
        res = w.write(facts, "c")
    assert check_text(facts, res.caption_fields, res.qa) == []
    cap = parts(srv.log, "caption")
    assert [(e["action"], e["repair"]) for e in cap] == [("hallucinate", False), ("good", True)]
    # the checker's findings on the fixture's wrong caption ("One bright point target ...": 2 in the facts)
    assert "One bright point target" in cap[1]["last_user"] and "targets" in cap[1]["last_user"]
    assert w.take_counters()["repairs"] == 1


@pytest.mark.parametrize(("part", "needle"), [("caption", "targets:"), ("qa", "counting answer")])
def test_hallucinated_count_is_rejected_with_its_reason(part: str, needle: str, cache: Path) -> None:
    with serve_llm({part: ["hallucinate", "hallucinate"]}) as srv:
        with pytest.raises(TextRejected) as info:
            writer(srv.url, cache, repair_attempts=1).write(fact_sheet("port"), "c")
    assert info.value.reason == "inconsistent_text"
    assert needle in info.value.detail and "after 1 repair" in info.value.detail
    assert len(parts(srv.log, part)) == 2


def test_a_land_cover_class_or_osm_feature_the_facts_lack_is_rejected(cache: Path) -> None:
    from .ext_sheets import farmland_with_ext

    facts = farmland_with_ext()  # Dynamic World crops / bare; OSM queried roads and railways: none
    with serve_llm({"caption": ["wrong_class"]}) as srv:
        with pytest.raises(TextRejected) as info:
            writer(srv.url, cache, repair_attempts=0).write(facts, "c")
    assert info.value.reason == "inconsistent_text"
    assert "mangroves" in info.value.detail and "railway" in info.value.detail


@pytest.mark.parametrize(
    ("part", "needle"), [("caption", "hedge word 'possibly'"), ("qa", "hedge word 'probably'")]
)
def test_hedging_is_rejected(part: str, needle: str, cache: Path) -> None:
    with serve_llm({part: ["hedge"]}) as srv:
        with pytest.raises(TextRejected) as info:
            writer(srv.url, cache, repair_attempts=0).write(fact_sheet("land"), "c")
    assert info.value.reason == "hedged_text" and needle in info.value.detail
    assert len(srv.log) == 2


# -- the cache --------------------------------------------------------------------------------------
def test_a_second_run_makes_zero_requests_and_corrupt_entries_are_refetched(cache: Path) -> None:
    sheets = [fact_sheet(n) for n in NAMES]
    with serve_llm({"caption": ["invalid_json", "hallucinate"]}) as srv:
        first = [writer(srv.url, cache).write(f, f"c{i}") for i, f in enumerate(sheets)]
        n_first = len(srv.log)
        w2 = writer(srv.url, cache)
        second = [w2.write(f, f"c{i}") for i, f in enumerate(sheets)]
        assert len(srv.log) == n_first  # ZERO requests
        assert second == first
        assert w2.take_counters()["cache_hits"] == n_first - 1  # the invalid JSON reply is not cached
        # corrupt two entries (not the hallucinated reply: refetched, it would come back good, unrepaired)
        wrong = [replies_for(f).wrong_caption["targets"] for f in sheets]  # type: ignore[union-attr]
        entries = sorted(p for p in cache.rglob("*.json") if not any(w and w in p.read_text() for w in wrong))
        entries[0].write_text("{not json")
        entries[1].write_bytes(entries[1].read_bytes()[:20])
        third = [writer(srv.url, cache).write(f, f"c{i}") for i, f in enumerate(sheets)]
        assert len(srv.log) == n_first + 2 and third == first
    assert not list(cache.rglob("*.tmp"))


def test_the_writer_pickles_without_its_client_or_key(cache: Path) -> None:
    with serve_llm() as srv:
        w = writer(srv.url, cache)
        w.write(fact_sheet("land"), "c")  # builds the client
        blob = pickle.dumps(w)
        assert SECRET.encode() not in blob
        w2 = pickle.loads(blob)
        assert w2.write(fact_sheet("land"), "c") == w.write(fact_sheet("land"), "c")


def test_a_local_server_needs_no_key_but_openai_does(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with serve_llm(api_key=NO_KEY_PLACEHOLDER) as srv:
        writer(srv.url, cache).write(fact_sheet("land"), "c")
    assert {e["authorization"] for e in srv.log} == {f"Bearer {NO_KEY_PLACEHOLDER}"}
    w = LlmWriter(LlmConfig(model="gpt-4o-mini", api_key_env=KEY_ENV), cache_dir=cache / "other")
    with pytest.raises(LlmError, match=f"environment variable {KEY_ENV} is not set"):
        w.write(fact_sheet("land"), "c")


# -- the stage: concurrency, vision, nothing lost -------------------------------------------------
def _records(n: int) -> Iterator[ChipRecord]:
    """Chips with a fact sheet and pixels (the Filter needs them); distinct pixels (no duplicates)."""
    rng = np.random.default_rng(0)
    scene = port_scene()
    for i in range(n):
        w = Window(i * 16, 0, 16, 16, 16, 16)
        rec = ChipRecord(chip_id_for(scene.scene_id, w), scene, w)
        rec.db = rng.normal(-15.0, 4.0, size=(1, 16, 16)).astype(np.float32)
        rec.valid = np.ones((16, 16), bool)
        rec.facts = fact_sheet(NAMES[i % len(NAMES)])
        rec.facts["location"]["centre_lon"] += 0.001 * i  # distinct requests: no cache hits between chips
        if i == 3:
            rec.reject("facts", "upstream", "rejected before the text stage")
        yield rec


def test_stage_bounds_concurrency_and_keeps_every_chip(cache: Path) -> None:
    with serve_llm({"caption": ["hallucinate"] * 4}, gather=3) as srv:
        text = TextConfig(writer="llm", llm=llm_cfg(srv.url, max_concurrent=3, repair_attempts=0))
        stage = WriteText(text, cache_dir=cache)
        stats = Stats()
        out = list(run_stages([stage, Filter()], _records(16), stats))
        stage.close()
    assert [r.chip_id for r in out] == [r.chip_id for r in _records(16)]  # order kept, nothing lost
    assert out[3].reject_reason == "upstream"
    text_rejects = [r for r in out if r.reject_stage == "text"]
    assert all(r.reject_reason == "inconsistent_text" and r.reject_detail for r in text_rejects)
    kept = [r for r in out if not r.rejected]
    assert len(kept) == 15 - len(text_rejects)  # the chips neither rejected upstream nor by the checker
    for r in kept:
        assert check_text(r.facts or {}, r.caption_fields or {}, r.qa) == []
        assert r.text_generator == "loopback/test-model" and r.prompt_version == "fusar-geovl/1.2"
    st = stats["text"]
    assert st.seen == 15 and st.kept + sum(st.rejected.values()) == 15
    assert st.extra["llm_requests"] == len(srv.log) and len(text_rejects) == 4
    assert st.extra["llm_prompt_tokens"] > 0
    # the server held the first 3 requests until all 3 were in flight: concurrent; and never more
    assert srv.gather.reached and srv.gauge.maximum == 3


def test_vision_sends_the_chip_png_as_a_data_url(cache: Path) -> None:
    with serve_llm() as srv:
        text = TextConfig(writer="llm", llm=llm_cfg(srv.url, vision=True))
        stage = WriteText(text, cache_dir=cache)
        out = list(stage.run(_records(1), Stats()))
        stage.close()
    assert not out[0].rejected
    cap, qa = parts(srv.log, "caption"), parts(srv.log, "qa")
    assert cap[0]["image"] and not qa[0]["image"] and qa[0]["images"] == []
    # the image the server decoded is the chip's PNG, byte for byte, and shows the chip's pixels
    (sent,) = cap[0]["images"]
    rec = next(_records(1))
    assert rec.db is not None and rec.valid is not None
    png = encode_chip(rec.db, rec.valid, rec.scene.polarisations, Stretch())
    assert sent == png.png
    with Image.open(io.BytesIO(sent)) as im:
        assert im.size == (16, 16)
        pixels = np.asarray(im)
    lo, hi = Stretch().min_db, Stretch().max_db
    expect = np.rint(np.clip((rec.db[0] - lo) / (hi - lo), 0, 1) * 255)  # the fixed stretch, by hand
    grey = pixels[..., 0] if pixels.ndim == 3 else pixels
    assert np.abs(grey.astype(int) - expect).max() <= 1


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,",  # an empty image
        "data:image/png;base64,bm90IGEgcG5n",  # "not a png"
        "data:image/jpeg;base64,iVBORw0KGgo=",
        "https://example.com/chip.png",
    ],
)
def test_the_server_refuses_images_that_are_not_pngs(url: str) -> None:
    content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(ValueError, match="Invalid image"):
        decode_images([{"role": "user", "content": content}])


def test_run_task_with_the_llm_writer_nothing_lost_rerun_free_key_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache_root = tmp_path / "cache"
    monkeypatch.setenv("TRIPLET_BUILDER_CACHE", str(cache_root))
    with serve_llm({"caption": ["hallucinate"] * 6, "qa": ["500"]}) as srv:
        over = {
            "text.writer": "llm",
            "text.llm": llm_cfg(srv.url, repair_attempts=0).model_dump(),
        }
        cfg = load_region(DEMO, {**over, "output.dir": str(tmp_path / "out1")})
        p = plan(cfg)
        spec = TaskSpec(0, p.tasks[1].scene, p.tasks[1].windows[:10])
        res = run_task(spec, cfg)
        n_first = len(srv.log)
        cfg2 = load_region(DEMO, {**over, "output.dir": str(tmp_path / "out2")})
        res2 = run_task(spec, cfg2)
        assert len(srv.log) == n_first  # the rerun pays for nothing
    out = tmp_path / "out1"
    rows = pq.read_table([out / f for f in res["written"]["files"] if f.startswith("data/")])
    rejects = pq.read_table([out / f for f in res["written"]["files"] if f.startswith("rejects/")])
    ids = set(rows.column("chip_id").to_pylist()) | set(rejects.column("chip_id").to_pylist())
    assert ids == {chip_id_for(spec.scene.scene_id, w) for w in spec.windows}  # every chip accounted for
    assert rows.num_rows + rejects.num_rows == 10
    assert all(rejects.column("reason").to_pylist()) and all(rejects.column("detail").to_pylist())
    assert "inconsistent_text" in rejects.column("reason").to_pylist()
    assert set(rows.column("text_generator").to_pylist()) <= {"loopback/test-model"}
    assert set(rows.column("prompt_version").to_pylist()) <= {"fusar-geovl/1.2"}
    text_stats = res["stats"]["text"]
    assert text_stats["extra"]["llm_requests"] == n_first and text_stats["extra"]["llm_retries"] == 1
    assert res2["stats"]["text"]["extra"]["llm_cache_hits"] == n_first - 1  # the 500 is not a reply
    assert "llm_requests" not in res2["stats"]["text"]["extra"]
    # the key is used on the wire, and never written anywhere
    assert {e["authorization"] for e in srv.log} == {f"Bearer {SECRET}"}
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.suffix == ".parquet" for f in files) and any(cache_root in f.parents for f in files)
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in caplog.text
