"""Mutation check of the critical paths (issue #14): plant each bug of `bench/mutants.py` in a temporary
copy of the repository, run the tests that must catch it, and report which mutants the suite kills.

    python -m bench.mutation [--only SUBSTRING] [--json out/mutation.json] [--timeout 240]

The working tree is never edited: the tracked files (`git ls-files`) are copied once to a temporary
directory, each mutant is applied there (its snippet must occur exactly once in its file, else it is a
harness ERROR, not a kill), `python -m pytest -q -x -p no:cacheprovider -p no:randomly <targets>` runs
in the copy, and the file is restored. A baseline run of every target on the unmutated copy comes
first: a mutant only counts as killed by tests that pass without it. Outcomes: `killed` (a target test
failed), `survived`, `equivalent` (survived and listed with the reason it cannot change behaviour),
`timeout` (counted as killed: the bug hangs a tested path), `error` (harness). Exit status 1 when a
non-equivalent mutant survives or anything errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[1]
PYTEST = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "-m", "not slow"]


@dataclass(frozen=True)
class Outcome:
    """The result of one mutant."""

    path: str
    name: str
    file: str
    status: str
    seconds: float
    detail: str


def copy_tree(dest: Path) -> None:
    """Copy the tracked files (and any untracked, not ignored ones) of the working tree to `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # the copy's packages (and its subprocesses') over any installed ones
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pytest(tree: Path, targets: list[str], timeout: float) -> tuple[str, str]:
    """Run the targets in `tree`: ("pass" | "fail" | "timeout", the last lines of the output)."""
    try:
        proc = subprocess.run(
            [sys.executable, *PYTEST, *targets],
            cwd=tree,
            env=_env(tree),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"over {timeout:.0f} s"
    tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return ("pass" if proc.returncode == 0 else "fail"), tail


def apply(tree: Path, m: Mutant) -> str | None:
    """Write the mutant into `tree`; return the original text, or None when the snippet is not unique."""
    target = tree / m.file
    text = target.read_text()
    if text.count(m.old) != 1:
        return None
    target.write_text(text.replace(m.old, m.new))
    return text


def run_mutant(tree: Path, m: Mutant, timeout: float) -> Outcome:
    """Plant one mutant in the copy, run its targets, restore the file."""
    t0 = time.monotonic()
    original = apply(tree, m)
    if original is None:
        n = (tree / m.file).read_text().count(m.old)
        return Outcome(m.path, m.name, m.file, "error", 0.0, f"snippet occurs {n} times (must be once)")
    try:
        result, tail = run_pytest(tree, list(m.tests), timeout)
    finally:
        (tree / m.file).write_text(original)
    if result == "timeout":
        status = "timeout"
    elif result == "fail":
        status = "killed"
    else:
        status = "equivalent" if m.equivalent else "survived"
    detail = m.equivalent if status == "equivalent" else tail
    return Outcome(m.path, m.name, m.file, status, round(time.monotonic() - t0, 1), detail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run only mutants whose path or name contains this")
    ap.add_argument("--json", default="out/mutation.json", help="where to write the results")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant run")
    args = ap.parse_args(argv)

    mutants = [m for m in MUTANTS if args.only in m.path or args.only in m.name]
    names = Counter(m.name for m in MUTANTS)
    dup = [n for n, k in names.items() if k > 1]
    if dup:
        print(f"error: bench/mutants.py: duplicate mutant names {dup}", file=sys.stderr)
        return 2
    if not mutants:
        print(f"error: no mutant matches --only {args.only!r}", file=sys.stderr)
        return 2

    t_start = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        targets = sorted({t for m in mutants for t in m.tests})
        result, tail = run_pytest(tree, targets, args.timeout * 4)
        if result != "pass":
            print(f"error: the target tests fail on the unmutated copy ({result}): {tail}", file=sys.stderr)
            return 2
        print(f"baseline: {len(targets)} targets pass on the unmutated copy", flush=True)
        for i, m in enumerate(mutants, 1):
            o = run_mutant(tree, m, args.timeout)
            outcomes.append(o)
            print(
                f"[{i:>3}/{len(mutants)}] {o.status:<10} {o.seconds:>6.1f}s  {o.path}: {o.name}", flush=True
            )

    elapsed = time.monotonic() - t_start
    by_path: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_path.setdefault(o.path, Counter())[o.status] += 1
    print(f"\n{'path':<34} {'mutants':>7} {'killed':>6} {'equiv':>6} {'surv':>5} {'error':>5}")
    for path, c in by_path.items():
        killed = c["killed"] + c["timeout"]
        print(
            f"{path:<34} {sum(c.values()):>7} {killed:>6} {c['equivalent']:>6} {c['survived']:>5} {c['error']:>5}"
        )
    total = Counter(o.status for o in outcomes)
    print(
        f"{'total':<34} {len(outcomes):>7} {total['killed'] + total['timeout']:>6} {total['equivalent']:>6}"
        f" {total['survived']:>5} {total['error']:>5}   ({elapsed / 60:.1f} min)"
    )
    for o in outcomes:
        if o.status in ("survived", "error"):
            print(f"  {o.status.upper()}: {o.path}: {o.name} ({o.file}): {o.detail}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seconds": round(elapsed, 1),
        "totals": dict(total),
        "mutants": [asdict(o) for o in outcomes],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if total["survived"] or total["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
