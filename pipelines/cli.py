"""Command line: `triplet-builder` (also `python -m pipelines`), one tool with a subcommand per job.

    build REGION      build the dataset of a region (what `make build-dataset` runs); --dry-run, --limit N
    validate REGION   check a region file and list its scenes and windows
    preview OUTPUT    one self-contained HTML page to look at a build
    verify OUTPUT     check a build folder against its manifest and the row schema
    export OUTPUT DEST   the kept rows in another trainer's format (fusar-gpt, llava)
    train | eval | predict   the FUSAR-GPT trainer (model/), with the [train] extra

Bad input ends with one line on stderr naming the file or field and what to do, and a non-zero exit;
pass --debug for the traceback of an unexpected error. -v / -vv show info / debug logs, -q errors only
(no progress bars, no summary). A closed stdout (`build ... | head -1`) ends quietly with exit 141, as
Unix tools do on SIGPIPE.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from pipelines.checks import check_before_work
from pipelines.executor import BuildError, build, plan, summary
from pipelines.model_commands import HELP as MODEL_HELP
from pipelines.model_commands import MODULES as MODEL_COMMANDS
from schemas import SPLITS
from triplet_builder import __version__
from triplet_builder.config import ConfigError, load_region
from triplet_builder.exports import FORMATS, export
from triplet_builder.failures import output_problem
from triplet_builder.sources import SourceError
from triplet_builder.stages.assemble import stage_names


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--set {p!r}: use --set field.path=value, e.g. --set chip.size=128")
        k, v = p.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="triplet-builder",
        description=__doc__.splitlines()[0],
        epilog="Examples:\n"
        "  triplet-builder build pipelines/regions/demo.yaml\n"
        "  triplet-builder build pipelines/regions/rotterdam_port.yaml --dry-run --price-in 0.15\n"
        "  triplet-builder <command> --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    ap.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging: -v info, -vv debug (repeatable)"
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="errors only: no progress bars, no summary")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser(
        "build",
        help="build the dataset of a region",
        description="Build the dataset of a region: scenes -> chips -> anchors -> facts -> text -> shards, "
        "on a Dask cluster, with one progress bar per stage. Examples:\n"
        "  triplet-builder build pipelines/regions/demo.yaml                 # -> out/demo/\n"
        "  triplet-builder build REGION --workers 4 --set chip.size=128 --overwrite\n"
        "  triplet-builder build REGION --dry-run --price-in 0.15 --price-out 0.60   # plan and cost only\n"
        "  triplet-builder build REGION --limit 20 --set output.dir=out/sample       # a quick sample\n"
        "  triplet-builder build REGION --scheduler tcp://host:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("region", help="region file, e.g. pipelines/regions/demo.yaml")
    b.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    b.add_argument("--workers", type=int, help="LocalCluster workers (default: the region's `workers`)")
    b.add_argument(
        "--overwrite", action="store_true", help="replace an output folder built with another config"
    )
    b.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="per-stage progress bars"
    )
    b.add_argument(
        "--dry-run",
        action="store_true",
        help="plan only (the scene search included) and print scenes, windows, chips, requests per "
        "service, LLM tokens and cost, bytes to write; reads no pixel, writes nothing",
    )
    b.add_argument(
        "--limit", type=int, metavar="N", help="build only the plan's first N windows (a quick sample)"
    )
    b.add_argument(
        "--dashboard", action="store_true", help="serve the Dask dashboard on a free port and print its link"
    )
    b.add_argument(
        "--price-in", type=float, default=0.0, help="(dry run) LLM price per million prompt tokens"
    )
    b.add_argument(
        "--price-out", type=float, default=0.0, help="(dry run) LLM price per million completion tokens"
    )
    b.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a region field, e.g. --set output.dir=out/x",
    )
    e = sub.add_parser(
        "export",
        help="export built shards to another trainer's format",
        description="Export the kept rows of a build folder. Examples:\n"
        "  triplet-builder export out/demo exports/demo-fusar --format fusar-gpt\n"
        "  triplet-builder export out/demo exports/demo-llava --format llava --split train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("output", help="a build folder (with manifest.json)")
    e.add_argument("dest", help="a new or empty folder to write")
    e.add_argument("--format", required=True, choices=FORMATS)
    e.add_argument("--split", choices=SPLITS, help="only this split (default: all)")
    vf = sub.add_parser(
        "verify",
        help="check a build folder against its manifest and the row schema",
        description="Example:\n  triplet-builder verify out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    vf.add_argument("output", help="a build folder (with manifest.json)")
    pv = sub.add_parser(
        "preview",
        help="write one self-contained HTML page to look at a build folder",
        description="Map, chips with caption, QA, boxes and anchors, counts and filters in one offline "
        "HTML file. Examples:\n"
        "  triplet-builder preview out/demo                  # -> out/demo/preview.html\n"
        "  triplet-builder preview out/demo --out /tmp/demo.html --max-chips 40",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pv.add_argument("output", help="a build folder (with manifest.json)")
    pv.add_argument("--out", help="the HTML file to write (default: OUTPUT/preview.html)")
    pv.add_argument("--max-chips", type=int, default=120, help="chips shown as cards (default: 120)")
    pb = sub.add_parser(
        "publish",
        help="publish a verified build folder to a hub dataset repo or an fsspec URL",
        description="Verify the folder, refuse local paths in it, then copy manifest, card, metadata, data/ "
        "and rejects/. Examples:\n"
        "  triplet-builder publish out/demo me/sar-demo --private     # hub (HF_TOKEN or `hf auth login`)\n"
        "  triplet-builder publish out/demo s3://bucket/sar-demo\n"
        "  triplet-builder publish out/demo ./release/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pb.add_argument("output", help="a build folder (with manifest.json)")
    pb.add_argument("dest", help="owner/name or hf://datasets/owner/name (hub), else an fsspec URL or folder")
    pb.add_argument("--private", action="store_true", help="create the hub repository private")
    v = sub.add_parser(
        "validate",
        help="validate a region file and list its scenes and windows",
        description="Check a region file (every invalid field at once) and list its scenes, windows and "
        "stages without building. Examples:\n"
        "  triplet-builder validate pipelines/regions/demo.yaml\n"
        "  triplet-builder validate pipelines/regions/demo.yaml --set chip.size=128",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("region")
    v.add_argument(
        "--online",
        action="store_true",
        help="also send one cheap request to each configured service (Earth Engine, STAC, COG index, LLM) "
        "and list remote scenes; without it nothing is contacted",
    )
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    for name in MODEL_COMMANDS:  # their arguments are the model modules' own (pipelines/model_commands.py)
        sub.add_parser(name, help=MODEL_HELP[name], add_help=False)
    return ap


def _split_model_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`[top-level flags] train ARGS...` -> (the flags and the command, ARGS); ARGS None for the others.
    The top-level options are all flags, so the first word that is not one is the command."""
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            return (argv[: i + 1], argv[i + 1 :]) if a in MODEL_COMMANDS else (argv, None)
    return argv, None


def _log_level(args: argparse.Namespace) -> int:
    if args.debug or args.verbose >= 2:
        return logging.DEBUG
    if args.verbose == 1 and not args.quiet:
        return logging.INFO
    return logging.ERROR


def _export(args: argparse.Namespace) -> int:
    try:
        res = export(args.output, args.dest, args.format, split=args.split)
    except (ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = ", ".join(f"{k} ({v})" for k, v in res["files"].items())
    print(f"exported {res['chips']} chip(s) as {res['format']} to {args.dest}: {files}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipelines.verify import verify

    problems = verify(args.output)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    m = json.loads((Path(args.output) / "manifest.json").read_text())
    print(f"{args.output}: verified; {m['counts']['chips_kept']} rows in {len(m['files'])} shard(s)")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pipelines.preview import PreviewError, preview

    try:
        res = preview(args.output, args.out, max_chips=args.max_chips)
    except (PreviewError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {res['file']}: {res['chips']} of {res['kept']} chip(s), {res['bytes'] / 1e6:.1f} MB")
    return 0


def _dry_run(cfg: Any, args: argparse.Namespace) -> int:
    """`build --dry-run`: the plan (the scene search is part of it) and its figures; no pixel, no file."""
    from pipelines.estimate import estimate, report
    from pipelines.limit import limit_plan

    p = plan(cfg)
    if args.limit is not None:
        p = limit_plan(p, args.limit, cfg.config_hash())
    for line in report(estimate(cfg, p, price_in=args.price_in, price_out=args.price_out), cfg):
        print(line)
    for f in p.failures:
        print(f"error: {f.message}", file=sys.stderr)
    return 1 if p.failures else 0


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that went away is found here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader of stdout went away (`| head -1`): stop quietly like a Unix tool; point stdout at
        # /dev/null so that the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None = None) -> int:
    head, model_argv = _split_model_command(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(head)
    if model_argv is not None:
        from pipelines.model_commands import run_model_command

        if args.quiet or args.verbose or args.debug:  # else the trainer's own logging (INFO)
            logging.basicConfig(level=_log_level(args), format="%(levelname)s %(name)s: %(message)s")
        return run_model_command(args.command, model_argv)
    logging.basicConfig(level=_log_level(args), format="%(levelname)s %(name)s: %(message)s")
    # library warnings (e.g. rasterio's NotGeoreferencedWarning) go through logging: the one error line
    # says what is wrong, and --debug shows them
    logging.captureWarnings(True)
    out_dir: str | None = None  # known once the region file loads: an OSError then names it
    if args.command == "export":
        return _export(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "preview":
        return _preview(args)
    if args.command == "publish":
        from pipelines.publish import run_cli

        return run_cli(args)
    try:
        cfg = load_region(args.region, _overrides(args.overrides))
        out_dir = cfg.output.dir
        check_before_work(cfg, getattr(args, "workers", None))
        if args.command == "validate":
            if args.online or cfg.scenes.type != "local":
                from pipelines.online import validate_services

                if (rc := validate_services(cfg, args.region, online=args.online)) is not None:
                    return rc
            p = plan(cfg)
            print(
                f"{args.region}: valid; {len(p.scenes)} scene(s), {sum(len(t.windows) for t in p.tasks)} window(s), {len(p.tasks)} task(s)"
                + (
                    f"; {p.windows_near_duplicate} flush window(s) not laid (> chip.max_overlap)"
                    if p.windows_near_duplicate
                    else ""
                )
            )
            print(f"  stages: {' -> '.join(stage_names(cfg.stages, labels=cfg.facts.labels is not None))}")
            for s in p.scenes:
                print(
                    f"  {s.scene_id}  {s.acquired:%Y-%m-%d}  {'+'.join(s.polarisations)}  {s.scale.value}  {s.pixel_size_m:.1f} m"
                )
            for sk in p.skipped:
                print(f"  skipped {sk['scene_id']}: {sk['reason']}")
            if cfg.facts.labels is not None:
                from triplet_builder.facts.labels import LabelSet

                lc = LabelSet.from_config(cfg.facts.labels).account((t.scene, t.windows) for t in p.tasks)
                print(
                    f"  labels {lc['file']}: {lc['total']}, {lc['in_chips']} in chips, {lc['matched_outside_chips']} "
                    f"matched outside the chips, {lc['unmatched']} unmatched (match: {lc['match']})"
                )
            for f in p.failures:
                print(f"error: {f.message}", file=sys.stderr)
            return 1 if p.failures else 0
        if args.dry_run:
            return _dry_run(cfg, args)
        manifest = build(
            cfg,
            scheduler=args.scheduler,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=args.progress and not args.quiet,
            region_file=args.region,
            limit=args.limit,
            dashboard=args.dashboard,
            announce=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (ConfigError, BuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except OSError as e:  # a full disk or an unwritable folder while writing the output
        msg = output_problem(e, out_dir) if out_dir is not None else None
        if msg is None and args.debug:
            raise
        print(
            f"error: {msg or f'{type(e).__name__}: {e} (rerun with --debug for the traceback)'}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; finished tasks are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    if not args.quiet:
        print(summary(manifest))
        out = Path(cfg.output.dir).resolve()
        print(f"  output: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
        if manifest.get("limit") is not None:
            print(
                f"  LIMITED: the first {manifest['counts']['windows']} of "
                f"{manifest['counts']['windows_planned']} window(s) (--limit {manifest['limit']})"
            )
    for f in manifest["failures"]:
        print(f"error: {f['message']}", file=sys.stderr)
    if manifest["counts"]["chips_kept"] == 0 and not manifest["failures"]:
        print("error: no chip was kept: see rejected_by_reason in the manifest", file=sys.stderr)
        return 1
    return 1 if manifest["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
