"""Benchmark: the LLM text stage against a remote-like server, to show that requests overlap as the
config allows (the latency of a real LLM API, not our code, should be the only cost).

The loopback OpenAI-compatible server of tests/servers/openai_compat.py, in its own process (as a
remote API would be), answers every request after a fixed latency (200 ms by default); the text stage runs over chips with distinct fact sheets through the
REAL openai client. Measured: requests per chip, chips per second (and its ideal, max_concurrent /
(requests per chip x latency)), the server's mean and maximum requests in flight (achieved concurrency
= mean / max_concurrent, aim > 0.9), then a second pass over the same chips from the request cache
(requests: must be 0).

    python -m bench.remote_llm                        # 200 chips, max_concurrent 8, 200 ms
    python -m bench.remote_llm --chips 64 --concurrency 16 --latency 0.5
Results are printed and written to bench/out/remote_llm.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers.openai_compat import openai_server
from tests.triplet_builder.text.factsheets import FACT_SHEETS, fact_sheet
from triplet_builder.config import LlmConfig, TextConfig
from triplet_builder.record import ChipRecord, SceneRef, Window, chip_id_for
from triplet_builder.stages.base import Stats
from triplet_builder.stages.text import WriteText

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def _records(scene: SceneRef, n: int) -> Iterator[ChipRecord]:
    """n chips with distinct fact sheets (the test fixtures, shifted in longitude: no cache sharing)."""
    names = sorted(FACT_SHEETS)
    for i in range(n):
        w = Window(i * 64, 0, 64, 64, 64, 64)
        rec = ChipRecord(chip_id_for(scene.scene_id, w), scene, w)
        rec.facts = fact_sheet(names[i % len(names)])
        rec.facts["location"]["centre_lon"] += 0.001 * i
        yield rec


def _pass(
    text: TextConfig, cache: Path, scene: SceneRef, chips: int
) -> tuple[float, Stats, list[ChipRecord]]:
    stage = WriteText(text, cache_dir=cache)
    stats = Stats()
    t0 = time.perf_counter()
    out = list(stage.run(_records(scene, chips), stats))
    wall = time.perf_counter() - t0
    stage.close()
    return wall, stats, out


def _serve(latency_s: float, urls: Any, stop: Any) -> None:
    """The server in its own process, as a remote API is: its work does not share our GIL."""
    with openai_server(latency_s=latency_s) as srv:
        urls.put(srv.url)
        stop.wait()


def _server_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_stats", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def run(chips: int, concurrency: int, latency_s: float) -> dict[str, Any]:
    from tests.conftest import port_scene

    scene = port_scene()
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(latency_s, urls, stop), daemon=True)
    proc.start()
    try:
        url = urls.get(timeout=60)
        with tempfile.TemporaryDirectory() as tmp:
            llm = LlmConfig(
                model="loopback/bench",
                base_url=f"{url}/v1",
                api_key_env="SAR_TRIPLETS_BENCH_NO_KEY",
                max_concurrent=concurrency,
                timeout_s=max(10.0, 20 * latency_s),
            )
            text = TextConfig(writer="llm", llm=llm)
            wall, stats, out = _pass(text, Path(tmp), scene, chips)
            first = _server_stats(url)
            wall2, stats2, out2 = _pass(text, Path(tmp), scene, chips)
            requests2 = _server_stats(url)["requests"] - first["requests"]
    finally:
        stop.set()
        proc.join(timeout=10)
    requests = first["requests"]
    kept = sum(1 for r in out if not r.rejected)
    per_chip = requests / chips
    extra = dict(stats["text"].extra)
    return {
        "chips": chips,
        "max_concurrent": concurrency,
        "latency_s": latency_s,
        "kept": kept,
        "rejected": dict(stats["text"].rejected),
        "requests": requests,
        "requests_per_chip": round(per_chip, 3),
        "wall_s": round(wall, 3),
        "chips_per_s": round(chips / wall, 2),
        "ideal_chips_per_s": round(concurrency / (per_chip * latency_s), 2),
        "server_mean_in_flight": round(first["mean_in_flight"], 3),
        "server_max_in_flight": first["max_in_flight"],
        "achieved_concurrency": round(first["mean_in_flight"] / concurrency, 3),
        "client_requests_counted": extra.get("llm_requests", 0),
        "prompt_tokens_per_request": round(extra.get("llm_prompt_tokens", 0) / max(1, requests), 1),
        "cached_pass": {
            "requests": requests2,
            "cache_hits": dict(stats2["text"].extra).get("llm_cache_hits", 0),
            "wall_s": round(wall2, 3),
            "chips_per_s": round(chips / wall2, 1),
            "same_text": [r.caption for r in out2] == [r.caption for r in out],
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--chips", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8, help="text.llm.max_concurrent")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    res = run(args.chips, args.concurrency, args.latency)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "remote_llm.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
