"""`python -m model.eval --checkpoint DIR [--data DIR] [--split test] [--baseline DIR]`: see model/eval/run.py."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from model.eval.metrics import report_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m model.eval",
        description="Score a FUSAR-GPT checkpoint.",
        epilog="Examples (`triplet-builder eval ...` is the same command):\n"
        "  python -m model.eval --checkpoint out/train/tiny/stage2/final --data out/demo\n"
        "  triplet-builder eval --checkpoint out/train/tiny/stage2/final --split validation --limit 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, help="a model.train checkpoint folder (e.g. out/train/x/stage2/final)"
    )
    p.add_argument(
        "--data",
        help="shard folder / glob, or a release .jsonl (default: the data the checkpoint was trained on)",
    )
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument(
        "--baseline", help="a second checkpoint to compare, e.g. one trained with tlm.enabled: false"
    )
    p.add_argument(
        "--tasks", nargs="+", help="subset of caption counting localization detection classification"
    )
    p.add_argument("--base", help="base model of a checkpoint in the release's layout (no config.json)")
    p.add_argument("--limit", type=int, help="at most N captions and N QA samples (a quick look)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", help="output folder (default <checkpoint>/eval-<split>)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import CheckpointError, read_json
    from model.eval.run import SYNTHETIC_ANCHORS_WARNING, EvalSettings, run_eval, synthetic_anchors

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        ckpt = Path(args.checkpoint)
        if not args.data and not (ckpt / "config.json").is_file() and ckpt.is_dir():
            raise ValueError(f"{ckpt} is in the release's layout (no config.json): pass --data DIR")
        data = args.data or read_json(ckpt, "config.json")["config"].get("data")
        if not data:
            raise ValueError("no data: pass --data DIR (the checkpoint's config names none)")
        settings = EvalSettings(data=data, split=args.split, batch_size=args.batch_size, limit=args.limit)
        if args.tasks:
            settings = dataclasses.replace(settings, tasks=tuple(args.tasks))
        results = run_eval(args.checkpoint, settings, baseline=args.baseline, out=args.out, base=args.base)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report_table(results), end="")
    if synthetic_anchors(settings.data):
        print(SYNTHETIC_ANCHORS_WARNING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
