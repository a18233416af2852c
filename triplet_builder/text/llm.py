"""The LLM text writer: captions (FUSAR-GEOVL fields) and FUSAR-GPT task QA written by a model behind
an OpenAI or OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, llama.cpp server).

Why it looks the way it does:

- Grounded: the model sees ONLY the fact sheet (plus, with `vision: true`, the chip PNG), through the
  versioned hierarchical prompt of text/prompts/ (place -> geography -> function -> SAR scattering ->
  targets -> consistency check). Every reply is validated against schemas/llm_caption.schema.json or
  schemas/llm_qa.schema.json and then checked by text/consistency.py; on findings the model is re-asked
  once (`repair_attempts`) with them; a chip that still fails is rejected WITH its reason
  (`TextRejected`), never written with unchecked text.
- Two requests per chip, as FUSAR-GPT's two stages: stage 1 the caption, stage 2 the task QA (the
  writer decides WHICH tasks, the model writes questions and answers; the checker verifies them).
- Paid calls are cached on disk by request hash (model + messages + params; never the key), written
  atomically, so a rerun after a crash pays for nothing twice; a corrupt entry is fetched again.
- Only known transient failures (429, 408/409, 5xx, timeouts, connection errors, invalid JSON) are
  retried, with bounded jittered backoff; the openai client's own retries are off so these are the
  only ones. Authentication / permission / unknown-model errors stop the task (`LlmError`).
- Bounded concurrency: `submit` runs the two parts of a chip on a thread pool over one sync client; a
  semaphore of `max_concurrent` slots is held only around the HTTP request, so at most that many
  requests are in flight per process while prompt building, reply checking and backoff sleeps run
  outside the slots (the server stays busy: see bench/remote_llm.py).
- The API key is read from `os.environ[api_key_env]` when the client is built (lazily, per process) and
  lives only inside that client: it is not an attribute of the writer, not pickled, not in the cache,
  not in any message or exception text produced here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Literal

from schemas import CAPTION_FIELDS
from triplet_builder.cache import default_cache_root
from triplet_builder.config import LlmConfig, QaConfig
from triplet_builder.remote import backoff_delay
from triplet_builder.text.base import TextResult, render_caption, validate_text
from triplet_builder.text.consistency import (
    COMMON_CLASSES,
    check_caption,
    check_qa,
)
from triplet_builder.text.llm_prompt import (
    PROMPT_FILE,
    SCHEMA_OF,
    Part,
    RequestCache,
    _conventions,
    _reply_schema,
    _user_text,
    load_prompt,
    parse_reply,
    qa_plan,
    request_key,
)

if TYPE_CHECKING:
    from openai import OpenAI

log = logging.getLogger(__name__)

POOL_PER_SLOT = 2  # pool threads per request slot (see LlmWriter._init_runtime)
NO_KEY_PLACEHOLDER = "no-key"  # sent to a local server that needs no key (the client insists on one)
Mode = Literal["json_schema", "json_object", "plain"]
_MODES: tuple[Mode, ...] = ("json_schema", "json_object", "plain")

# Reject reasons (stage "text"); the Filter's "inconsistent_text" is reused for the checker's findings.
# what no caption or answer grounded in a fact sheet contains: markup (HTML / Markdown links and images),
# URLs, and instructions aimed at whoever reads the text (a reply echoing injected text is refused)
_FOREIGN_TEXT = re.compile(
    r"<\s*/?\s*[A-Za-z!?][^>]*>|!\[|\]\(|https?://|www\.|\b(ignore|disregard)\b.{0,40}\binstructions?\b"
    r"|\bsystem prompt\b|\bapi[ _-]?key\b",
    re.I | re.S,
)


def foreign_text(texts: Sequence[str | None]) -> list[str]:
    """Problems for texts that carry markup, URLs or instructions (never grounded in the facts)."""
    out = []
    for t in texts:
        m = _FOREIGN_TEXT.search(t or "")
        if m is not None:
            out.append(
                f"text carries markup, a URL or an instruction ({m.group(0)[:40]!r}): write plain prose"
            )
    return out


REJECT_INCONSISTENT = "inconsistent_text"
REJECT_HEDGED = "hedged_text"
REJECT_INVALID = "llm_invalid_output"
REJECT_UNAVAILABLE = "llm_unavailable"
REJECT_BAD_REQUEST = "llm_bad_request"


class LlmError(RuntimeError):
    """A configuration error no retry can fix (no key, wrong key, unknown model): the task stops."""


class TextRejected(Exception):
    """The writer could not produce consistent text for one chip; the stage rejects the chip with
    `reason` (a short code counted in the manifest) and `detail` (what went wrong)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# == the writer ====================================================================================
@dataclass
class Pending:
    """The two in-flight parts of one chip (see LlmWriter.submit)."""

    facts: dict[str, Any]
    caption: Future[dict[str, Any]]
    qa: Future[dict[str, Any]]


class LlmWriter:
    """Text writer over an OpenAI-compatible chat-completions API (see the module docstring).

    name: the model id; prompt_version: the prompt file's version (both stored in every row).
    cache_dir: the request cache folder (e.g. cfg.cache_root() / "llm").
    """

    def __init__(
        self,
        cfg: LlmConfig,
        *,
        cache_dir: Path | None = None,
        qa: QaConfig | None = None,
        prompt_file: str = PROMPT_FILE,
    ) -> None:
        self.cfg = cfg
        self.prompt = load_prompt(prompt_file)
        self.name: str = cfg.model
        self.prompt_version: str = self.prompt.version
        self.qa_cfg = qa or QaConfig()
        self.classes = COMMON_CLASSES  # what the Filter checks against
        self.cache = RequestCache(Path(cache_dir) if cache_dir is not None else default_cache_root() / "llm")
        self._system = Template(self.prompt.system).substitute(_conventions())
        self._init_runtime()

    # -- per-process state (never pickled) -----------------------------------------------------
    def _init_runtime(self) -> None:
        self._client: OpenAI | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._mode: Mode = "json_schema"
        self._tokens_param = "max_tokens"
        self._send_temperature = True
        # requests in flight <= max_concurrent; the pool is larger so that building prompts, parsing and
        # checking replies, and backoff sleeps happen while other threads hold the request slots
        self._slots = threading.BoundedSemaphore(self.cfg.max_concurrent)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in (
            "_client",
            "_pool",
            "_lock",
            "_counters",
            "_mode",
            "_slots",
            "_tokens_param",
            "_send_temperature",
        ):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def _get_client(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                key = os.environ.get(self.cfg.api_key_env)
                if not key:
                    if not (self.cfg.base_url or os.environ.get("OPENAI_BASE_URL")):
                        raise LlmError(
                            f"text.llm: environment variable {self.cfg.api_key_env} is not set; export your "
                            "API key there, or set text.llm.base_url to a local server that needs none"
                        )
                    log.info(
                        "no %s set: sending a placeholder key to %s", self.cfg.api_key_env, self.cfg.base_url
                    )
                    key = NO_KEY_PLACEHOLDER
                self._client = OpenAI(
                    api_key=key, base_url=self.cfg.base_url, timeout=self.cfg.timeout_s, max_retries=0
                )
            return self._client

    def _count(self, **kv: int) -> None:
        with self._lock:
            self._counters.update(kv)

    def take_counters(self) -> Counter[str]:
        """The counters since the last call (requests, retries, cache_hits, prompt_tokens, ...), reset."""
        with self._lock:
            out, self._counters = self._counters, Counter()
        return out

    def close(self) -> None:
        """Stop the pool (queued requests are cancelled) and close the HTTP client."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the public interface ------------------------------------------------------------------
    def submit(self, facts: dict[str, Any], chip_id: str, image_png: bytes | None = None) -> Pending:
        """Start both parts of one chip on the pool (at most max_concurrent requests in flight)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=POOL_PER_SLOT * self.cfg.max_concurrent, thread_name_prefix="llm"
                )
            pool = self._pool
        plan = qa_plan(facts, chip_id, self.qa_cfg)
        return Pending(
            facts,
            pool.submit(self._part, "caption", facts, [], image_png),
            pool.submit(self._part, "qa", facts, plan, None),
        )

    def result(self, pending: Pending) -> TextResult:
        """Wait for both parts; raise TextRejected (or LlmError) when the chip cannot be written."""
        wait((pending.caption, pending.qa))  # both, even when one fails: nothing left in flight
        cap, qa_obj = pending.caption.result(), pending.qa.result()
        fields: dict[str, str | None] = {k: (cap[k] or None) for k in CAPTION_FIELDS}
        qa = [
            {"task": q["task"], "question": q["question"].strip(), "answer": q["answer"].strip()}
            for q in qa_obj["qa"]
        ]
        try:
            validate_text(fields, qa)
        except ValueError as e:
            raise TextRejected(REJECT_INVALID, str(e)) from None
        return TextResult(caption_fields=fields, caption=render_caption(fields), qa=qa)

    def write(self, facts: dict[str, Any], chip_id: str, image_png: bytes | None = None) -> TextResult:
        """One chip (the TextWriter protocol); the stage uses submit / result to overlap chips."""
        return self.result(self.submit(facts, chip_id, image_png))

    # -- one part: request, check, repair --------------------------------------------------------
    def _part(
        self, part: Part, facts: dict[str, Any], plan: list[dict[str, Any]], image_png: bytes | None
    ) -> dict[str, Any]:
        text = _user_text(self.prompt, part, facts, plan, self.classes)
        user: dict[str, Any] = {"role": "user", "content": text}
        if image_png is not None and self.cfg.vision:
            import base64

            url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
            user["content"] = [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ]
        messages: list[dict[str, Any]] = [{"role": "system", "content": self._system}, user]
        rounds = 1 + self.cfg.repair_attempts
        for i in range(rounds):
            obj, raw = self._complete(messages, part)
            problems = self._problems(part, obj, facts, plan)
            if not problems:
                return obj
            if i + 1 < rounds:
                self._count(repairs=1)
                findings = "\n".join(f"- {p}" for p in problems[:20])
                messages = [
                    *messages,
                    {"role": "assistant", "content": raw},
                    {"role": "user", "content": Template(self.prompt.repair).substitute(findings=findings)},
                ]
        hedged = any("hedge word" in p or "refusal" in p for p in problems)
        after = f" (after {self.cfg.repair_attempts} repair{'s' if self.cfg.repair_attempts != 1 else ''})"
        raise TextRejected(
            REJECT_HEDGED if hedged else REJECT_INCONSISTENT, f"{part}: " + "; ".join(problems[:5]) + after
        )

    def _problems(
        self, part: Part, obj: dict[str, Any], facts: dict[str, Any], plan: list[dict[str, Any]]
    ) -> list[str]:
        if part == "caption":
            foreign = foreign_text([obj[k] for k in CAPTION_FIELDS])
            return foreign + check_caption(facts, {k: obj[k] for k in CAPTION_FIELDS}, self.classes)
        out = foreign_text([str(q.get(k, "")) for q in obj["qa"] for k in ("question", "answer")])
        want, got = Counter(p["task"] for p in plan), Counter(q["task"] for q in obj["qa"])
        for task in sorted(set(want) | set(got)):
            if want[task] != got[task]:
                out.append(f"qa: {got[task]} {task} item(s) but TASKS asks for {want[task]}")
        return out + check_qa(facts, obj["qa"], self.classes)

    # -- one request, with the cache and the retries ---------------------------------------------
    def _complete(self, messages: list[dict[str, Any]], part: Part) -> tuple[dict[str, Any], str]:
        """(parsed reply, raw content) of one request: from the cache, else from the server with
        retries on transient errors and invalid JSON; raise TextRejected when attempts run out."""
        cfg = self.cfg
        key = request_key(cfg.model, messages, part, cfg.temperature, cfg.max_tokens)
        entry = self.cache.get(key)
        if entry is not None:
            try:
                obj = parse_reply(entry["content"], part)
            except ValueError:
                log.warning("LLM cache entry %s no longer matches its schema; fetching it again", key)
            else:
                self._count(cache_hits=1)
                return obj, entry["content"]
        import openai

        client = self._get_client()
        attempt, transport = 0, True
        while True:
            mode = self._mode
            self._count(requests=1)
            try:
                sent = self._request_kwargs(part, mode)
                with self._slots:
                    resp = client.chat.completions.create(
                        model=cfg.model,
                        messages=messages,  # type: ignore[arg-type]
                        **sent,
                    )
            except openai.BadRequestError as e:
                if self._adapt(part, mode, sent, e):
                    continue  # each adaptation happens once: bounded
                raise TextRejected(
                    REJECT_BAD_REQUEST, f"{part}: the server refused the request ({_describe(e, cfg)})"
                ) from None
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
                raise LlmError(
                    f"text.llm: {_describe(e, cfg)} from {cfg.base_url or 'the OpenAI API'}; check the key in "
                    f"${cfg.api_key_env}, text.llm.model ({cfg.model}) and text.llm.base_url"
                ) from None
            except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as e:
                if isinstance(e, openai.APIStatusError) and not _transient_status(e.status_code):
                    raise LlmError(
                        f"text.llm: {_describe(e, cfg)}; not retried (not a transient error)"
                    ) from None
                error, retry_after, transport = _describe(e, cfg), _retry_after(e), True
            except (UnicodeDecodeError, json.JSONDecodeError) as e:  # a garbled body (a proxy, a crash)
                error, retry_after, transport = f"garbled response ({type(e).__name__})", None, True
            else:
                usage = resp.usage
                self._count(
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
                choice = resp.choices[0] if resp.choices else None
                content = (choice.message.content if choice else None) or ""
                try:
                    obj = parse_reply(content, part)
                except ValueError as e:
                    if choice is not None and choice.finish_reason == "length":
                        raise TextRejected(
                            REJECT_INVALID,
                            f"{part}: reply cut at max_tokens={cfg.max_tokens}; raise text.llm.max_tokens",
                        ) from None
                    error, retry_after, transport = f"invalid reply: {e}", None, False
                else:
                    usage_d = (
                        {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
                        if usage
                        else {}
                    )
                    self.cache.put(
                        key,
                        {
                            "model": resp.model,
                            "content": content,
                            "usage": usage_d,
                            "part": part,
                            "prompt_version": self.prompt_version,
                        },
                    )
                    return obj, content
            attempt += 1
            if attempt > cfg.max_retries:
                reason = REJECT_UNAVAILABLE if transport else REJECT_INVALID
                raise TextRejected(
                    reason,
                    f"{part}: {error}; gave up after {attempt} attempts (text.llm.max_retries={cfg.max_retries})",
                )
            self._count(retries=1, **{f"retries_{_kind(error)}": 1})  # summarised by the executor
            delay = backoff_delay(attempt - 1, cfg.backoff_s, cfg.max_backoff_s, retry_after=retry_after)
            log.debug(  # one line per retry only with --debug: a dead server would print thousands
                "LLM %s request failed (%s); retry %d/%d in %.2f s",
                part,
                error,
                attempt,
                cfg.max_retries,
                delay,
            )
            time.sleep(delay)

    def _request_kwargs(self, part: Part, mode: Mode) -> dict[str, Any]:
        """The sampling and format parameters, as far as this server accepts them (see _adapt)."""
        kw: dict[str, Any] = {self._tokens_param: self.cfg.max_tokens}
        if self._send_temperature:
            kw["temperature"] = self.cfg.temperature
        if mode == "json_schema":
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_OF[part], "schema": _reply_schema(part), "strict": True},
            }
        elif mode == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    def _adapt(self, part: Part, mode: Mode, sent: dict[str, Any], e: Exception) -> bool:
        """A 400 that names a parameter this server does not take: adapt once and say so. response_format
        json_schema -> json_object -> none (plain JSON parsing); max_tokens -> max_completion_tokens
        (OpenAI reasoning models); temperature -> the server's default. False: nothing to adapt (the
        server's message is read to classify the error, never repeated: it may echo the request)."""
        body = getattr(e, "body", None)
        param = str(body.get("param") or "") if isinstance(body, dict) else ""
        text = f"{param} {getattr(e, 'message', '')}".lower()
        with self._lock:
            if self._request_kwargs(part, self._mode) != sent:
                return True  # another request adapted meanwhile: retry with that
            if "max_completion_tokens" in text and self._tokens_param == "max_tokens":
                self._tokens_param, what = "max_completion_tokens", "max_tokens -> max_completion_tokens"
            elif "temperature" in text and self._send_temperature:
                self._send_temperature, what = False, "temperature -> the server's default"
            elif re.search(r"response_format|json_schema|json_object|structured", text) and mode != "plain":
                if _MODES.index(self._mode) <= _MODES.index(mode):
                    self._mode = _MODES[_MODES.index(mode) + 1]
                what = f"response_format {mode} -> {self._mode}"
            else:
                return False
            self._counters.update(param_fallbacks=1)
        log.warning("LLM server refused a parameter (%s); using %s from now on", _describe(e, self.cfg), what)
        return True


def _transient_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _describe(e: Exception, cfg: LlmConfig) -> str:
    """A one-line description of an API error WITHOUT the server's message (which may echo the key)."""
    import openai

    if isinstance(e, openai.APITimeoutError):
        return f"timed out after {cfg.timeout_s:g} s"
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code} ({type(e).__name__})"
    return type(e).__name__


def _kind(error: str) -> str:
    """The kind of a failure for the retry counters: `http_429`, `timeout`, `apiconnectionerror`,
    `garbled`, `invalid` (a reply that is not the schema's JSON)."""
    m = re.match(r"HTTP (\d+)", error)
    if m:
        return f"http_{m[1]}"
    for word in ("timed out", "garbled", "invalid"):
        if error.startswith(word):
            return word.split()[0].replace("timed", "timeout")
    return re.sub(r"\W+", "_", error.split()[0]).lower()


def _retry_after(e: Exception) -> float | None:
    """The server's Retry-After (seconds), if it sent one."""
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


__all__ = [
    "LlmError",
    "LlmWriter",
    "Pending",
    "TextRejected",
]
