"""Benchmark: the consistency checker's seconds on built rows, and (with `--before`) that another checkout
finds the same problems, row by row, in the same order.

The corpus is every kept row of the built datasets named (default: the demo and the large scenes that
`bench.build_throughput` builds under bench/out) plus, per row, three variants with one caption field
perturbed (a function, place, count, date or negation added; digits changed), seeded, so that the checker's
problem paths run too. `check_text` (caption fields and task QA) runs on each row; the problems of all
rows are hashed (SHA-256 of their JSON). With `--before`, the same corpus is checked by the other
checkout's code in a subprocess, interleaved `--repeats` times: best seconds of each and the ratio, and
whether the hashes agree.

    python -m bench.checker_speed                              # writes bench/out/checker_speed.json
    python -m bench.checker_speed --before /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DEFAULT_DATA = ("demo", "large1", "large1_fact_stages", "large4")  # under bench/out, where built
ADDED = (
    " A port and an airport are visible.",
    " There are no ships or aircraft.",
    " Industrial area in cells 3 and 12.",
    " Forest and wetland cover most of it, near Port-Saint-Louis-du-Rhône.",
    " 12 ships sit in the top-left cell.",
    " About 47 % is water; no roads are mapped.",
    " Imaged on 3 March 2019.",
    " Urban area with vessel traffic.",
    " Harbour quays 2.4 km long.",
    " The open water area of the bay; shipping lanes.",
    " It may be a town.",
    " Cropland covers about 80 % (ESA WorldCover 2021).",
    " No port here, not an airport.",
    " Three bright targets in cells 1-3.",
)


def built_rows(dirs: list[Path]) -> list[dict[str, Any]]:
    """(facts, caption_fields, qa) of every kept row with a fact sheet, dataset by dataset."""
    rows = []
    for d in dirs:
        for f in sorted((d / "data").rglob("*.parquet")):
            for r in pq.read_table(f, columns=["facts", "caption_fields", "qa"]).to_pylist():
                if r["facts"]:
                    rows.append(
                        {
                            "facts": json.loads(r["facts"]),
                            "fields": r["caption_fields"] or {},
                            "qa": r["qa"] or [],
                        }
                    )
    return rows


def with_variants(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Each row, then three copies of it with one caption field perturbed (seeded)."""
    rnd = random.Random(seed)
    out = []
    for row in rows:
        out.append(row)
        for _ in range(3):
            fields = dict(row["fields"])
            keys = sorted(k for k, v in fields.items() if v)
            if not keys:
                continue
            k = rnd.choice(keys)
            op = rnd.random()
            if op < 0.5:
                fields[k] = fields[k] + rnd.choice(ADDED)
            elif op < 0.8:
                fields[k] = "".join(
                    str(rnd.randint(0, 9)) if ch.isdigit() and rnd.random() < 0.3 else ch for ch in fields[k]
                )
            else:
                fields[k] = rnd.choice(ADDED).strip() + " " + fields[k]
            out.append({**row, "fields": fields})
    return out


def check_all(corpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Run this checkout's `check_text` on every row: seconds, problem counts and the problems' hash."""
    from triplet_builder.text.consistency import check_text

    t0 = time.perf_counter()
    found = [check_text(r["facts"], r["fields"], r["qa"]) for r in corpus]
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "rows": len(corpus),
        "rows_with_problems": sum(1 for p in found if p),
        "problems": sum(len(p) for p in found),
        "sha256": hashlib.sha256(json.dumps(found).encode()).hexdigest(),
    }


def _other(checkout: Path, corpus_file: Path) -> dict[str, Any]:
    """`check_all` (this file's) over a checkout's own checker: run in that folder, which Python searches
    first, so that its `triplet_builder` is the one imported."""
    code = "\n".join(
        [
            "import hashlib, json, sys, time",
            "from typing import Any",
            inspect.getsource(check_all),
            "print(json.dumps(check_all(json.loads(open(sys.argv[1]).read()))))",
        ]
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(corpus_file)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"the checker in {checkout} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, nargs="*", help="built dataset folders (default: bench/out's builds)"
    )
    ap.add_argument("--before", type=Path, help="another checkout whose checker runs on the same corpus")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    dirs = args.data or [OUT / d for d in DEFAULT_DATA if (OUT / d / "data").is_dir()]
    if not dirs:
        raise SystemExit(
            "no built dataset: run `python -m bench.build_throughput` first, or name one with --data"
        )
    corpus = with_variants(built_rows(dirs))
    now = [check_all(corpus) for _ in range(args.repeats)] if args.before is None else []
    before: list[dict[str, Any]] = []
    if args.before is not None:
        with tempfile.TemporaryDirectory() as tmp:
            corpus_file = Path(tmp) / "corpus.json"
            corpus_file.write_text(json.dumps(corpus))
            for _ in range(args.repeats):  # interleaved: a noisy machine slows both alike
                now.append(_other(ROOT, corpus_file))
                before.append(_other(args.before.resolve(), corpus_file))
    best = min(r["seconds"] for r in now)
    res: dict[str, Any] = {"datasets": [d.name for d in dirs], **now[0], "seconds": best}
    if before:
        b = min(r["seconds"] for r in before)
        res["before"] = {**before[0], "seconds": b}
        res["same_problems_as_before"] = before[0]["sha256"] == now[0]["sha256"]
        res["before_over_now"] = round(b / best, 3)
    print(json.dumps(res, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "checker_speed.json").write_text(json.dumps(res, indent=1))
    if before and not res["same_problems_as_before"]:
        print("the two checkouts' checkers disagree on this corpus", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
