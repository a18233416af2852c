"""What the LLM writer sends and what it takes back: the versioned prompt of text/prompts/ filled with a
chip's fact sheet and its derived views, the reply schemas as sent, the on-disk cache of paid replies
keyed by everything that decides a reply, and the parsing of a reply into a schema-valid object.

The writer itself (client, concurrency, retries, repair) is triplet_builder/text/llm.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Literal

import yaml

from schemas import json_schema, validate
from schemas.frames import qa_frame
from triplet_builder.config import QaConfig
from triplet_builder.text.consistency import (
    BRIGHT_PRESENT,
    CELL_NAMES,
    DETECTION_KEY,
    HEDGE_WORDS,
    MOSTLY,
    NODATA_CELL,
    UNGROUNDED_TERMS,
    WATER_PRESENT,
    canonical_label,
    cells_of,
    format_percent,
    has_boundary,
    targets_for,
    water_cells,
)
from triplet_builder.text.llm_views import annotation_views
from triplet_builder.text.offline import seeded_rng
from triplet_builder.text.qa import qa_plan as plan_qa

log = logging.getLogger(__name__)

PROMPT_FILE = "fusar_geovl_v1.yaml"
Part = Literal["caption", "qa"]
SCHEMA_OF: dict[str, str] = {"caption": "llm_caption", "qa": "llm_qa"}


# == the prompt ====================================================================================
@dataclass(frozen=True)
class Prompt:
    """One versioned prompt file of text/prompts/ (see fusar_geovl_v1.yaml)."""

    version: str
    system: str
    caption: str
    qa: str
    repair: str


@cache
def load_prompt(name: str = PROMPT_FILE) -> Prompt:
    """Load a prompt file bundled in triplet_builder/text/prompts/; raise ValueError naming the file
    and the missing key when it is incomplete."""
    text = resources.files("triplet_builder.text").joinpath("prompts", name).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    keys = ("version", "system", "caption", "qa", "repair")
    missing = [k for k in keys if not isinstance((raw or {}).get(k), str)]
    if missing:
        raise ValueError(f"prompt file {name}: missing or non-string keys {missing}; add them")
    return Prompt(**{k: raw[k] for k in keys})


def _conventions() -> dict[str, str]:
    """The checker's rules as prompt text: the same constants the checker uses."""
    return {
        "hedge_words": ", ".join(HEDGE_WORDS),
        "ungrounded_terms": ", ".join(UNGROUNDED_TERMS),
        "cell_names": ", ".join(f"{c} {n}" for c, n in CELL_NAMES.items()),
    }


def derived_facts(facts: dict[str, Any], classes: Sequence[str] = ()) -> dict[str, Any]:
    """Views of the fact sheet in the dataset's conventions (rounded percentages, cell groups, target
    counts per class) so the model copies rather than computes; nothing here is new information."""
    s = facts["surface"]
    cells = s["cells"]
    targets: list[dict[str, Any]] = []
    keys = sorted({canonical_label(o["label"]) for o in facts.get("objects") or []})
    for key in keys or [DETECTION_KEY]:
        ts = targets_for(facts, key)
        lengths = sorted(round(float(t["length_m"])) for t in ts if t.get("length_m") is not None)
        item: dict[str, Any] = {"class": key, "count": len(ts), "cells": cells_of(ts)}
        if lengths:
            item["lengths_m"] = lengths
        if key == DETECTION_KEY:
            item["on_open_water"] = sum(1 for t in ts if t.get("on_water"))
        targets.append(item)
    for c in classes:
        key = canonical_label(c)
        if key not in keys and key != DETECTION_KEY:
            targets.append({"class": key, "count": len(targets_for(facts, key)), "cells": []})
    return {
        "percent": {
            "open_water": format_percent(s["water_fraction"]),
            "land": format_percent(s["land_fraction"]),
            "strong_scatterers": format_percent(s["bright_fraction"]),
            "no_data": format_percent(1.0 - s["valid_fraction"]),
        },
        "cells": {
            "mostly_open_water": water_cells(facts, MOSTLY),
            "land_with_some_water": water_cells(facts, WATER_PRESENT, MOSTLY),
            "land_without_water": water_cells(facts, 0.0, WATER_PRESENT),
            "strong_scatterers": [
                c["cell"]
                for c in cells
                if c["valid_fraction"] >= NODATA_CELL and c["bright_fraction"] >= BRIGHT_PRESENT
            ],
            "mostly_no_data": [c["cell"] for c in cells if c["valid_fraction"] < NODATA_CELL],
        },
        "land_water_boundary": has_boundary(facts)
        or WATER_PRESENT <= s["water_fraction"] <= 1.0 - WATER_PRESENT,
        "backscatter_db": {"mean": round(s["mean_db"], 1), "std": round(s["std_db"], 1)},
        "targets": targets,
        **annotation_views(facts),
    }


def qa_plan(
    facts: dict[str, Any], chip_id: str, qa: QaConfig | None = None, seed_name: str = "llm"
) -> list[dict[str, Any]]:
    """Which QA items to ask for, deterministically per chip: text/qa.py's plan (the offline writer's
    selection of classes, negatives and tasks), as the requests sent in TASKS."""
    rng = seeded_rng(seed_name, chip_id, "qa-plan")
    frame = qa_frame(facts["chip"]["width_px"], facts["chip"]["height_px"])
    return [item.request(frame, facts) for item in plan_qa(facts, rng, qa or QaConfig())]


@cache
def _reply_schema(part: str) -> dict[str, Any]:
    """The reply schema as sent to the server: the bundled schema without the $schema / $id keys some
    servers refuse, and without its top-level title and description (written for developers)."""
    drop = ("title", "description")
    return {k: v for k, v in json_schema(SCHEMA_OF[part]).items() if not k.startswith("$") and k not in drop}


def _user_text(
    prompt: Prompt, part: Part, facts: dict[str, Any], plan: list[dict[str, Any]], classes: Sequence[str]
) -> str:
    values = {
        "facts": json.dumps(facts, sort_keys=True),
        "derived": json.dumps(derived_facts(facts, classes), sort_keys=True),
        "tasks": json.dumps(plan),
    }
    body = Template(prompt.caption if part == "caption" else prompt.qa).substitute(values)
    # the structure in the text too: json_object / plain servers never see the response_format schema
    schema = json.dumps(_reply_schema(part), separators=(",", ":"))
    return f"{body}\nReply with one JSON object that matches this JSON schema:\n{schema}\n"


# == the request cache =============================================================================
def request_key(
    model: str, messages: list[dict[str, Any]], part: str, temperature: float, max_tokens: int
) -> str:
    """SHA-256 of everything that decides a reply: model, messages and params (not the key, not the
    base URL, not the response-format mode, which only says how the server is asked to enforce JSON)."""
    payload = {
        "model": model,
        "messages": messages,
        "schema": SCHEMA_OF[part],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RequestCache:
    """One JSON file per paid reply, `root/<key[:2]>/<key>.json`, written to a temporary name and renamed
    (atomic), so a crash leaves either the whole entry or none. Holds the reply content and its
    token usage; never the request headers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry, or None when absent or corrupt (a corrupt entry is logged and refetched)."""
        p = self.path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.warning("LLM cache entry %s is corrupt; fetching it again", p)
            return None
        if (
            not isinstance(entry, dict)
            or entry.get("key") != key
            or not isinstance(entry.get("content"), str)
        ):
            log.warning("LLM cache entry %s is corrupt; fetching it again", p)
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({**entry, "key": key}, sort_keys=True), encoding="utf-8")
        os.replace(tmp, p)


# == parsing =======================================================================================
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(?P<body>.*?)\s*```\s*$", re.S | re.I)


def parse_reply(content: str, part: str) -> dict[str, Any]:
    """The reply as a JSON object valid against its schema: plain JSON, fenced JSON, or the outermost
    {...} of a chatty reply. Raise ValueError saying what is wrong."""
    text = content.strip()
    m = _FENCE_RE.match(text)
    if m:
        text = m.group("body")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        a, b = text.find("{"), text.rfind("}")
        if a < 0 or b <= a:
            raise ValueError("the reply holds no JSON object") from None
        try:
            obj = json.loads(text[a : b + 1])
        except json.JSONDecodeError as e:
            raise ValueError(f"the reply is not valid JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"the reply is a JSON {type(obj).__name__}, not an object")
    validate(SCHEMA_OF[part], obj)
    return obj
