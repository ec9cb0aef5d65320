"""The `webseg` command: pixel-level segmentation labels from web images and videos tagged only with
the keywords they were found under, and a segmenter trained on them (locally or on a Ray cluster).

    webseg manifest         DIR --out DIR/manifest.jsonl [--classes classes.json]
    webseg config           [--config FILE] [--section NAME]
    webseg train-classifier --collection URI --out MODEL_URI [--config FILE] [--epochs N] [--workers N]
    webseg pseudo-label     --collection URI --model MODEL_URI --out LABELS_URI [--config FILE]
    webseg evaluate         --labels LABELS_URI --collection URI
    webseg report           --labels LABELS_URI [--collection URI]
    webseg train-segmenter  --labels LABELS_URI --out MODEL_URI [--val-collection URI]
                            [--epochs N] [--workers N] [--resume]
    webseg predict          --model MODEL_URI --collection URI --out LABELS_URI
    webseg retrain          (see webseg retrain --help)
    webseg demo             [--out DIR]

Every command that has a result ends with a short summary table, or the same result as JSON with
--json (IoU, mIoU, J, AP and coverage in percent, times in seconds; see pipeline/summary.py).
URIs are local paths or s3://...; exit status 0 on success, non-zero with a one-line reason on error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata

from pipeline import summary
from pipeline.logs import LEVELS, configure_logging, ray_logs_wanted
from pipeline.progress import stage
from pipeline.stderr_filter import filtered_stderr

log = logging.getLogger("webseg")

DESCRIPTION = """\
WebSeg turns web-crawled images and videos, tagged only with the search keywords they were found
under, into pixel-level segmentation labels (class activation maps for *which* tag, objectness,
motion and a spatio-temporal min-cut for *where*), and trains a segmenter on them: on a laptop
with a local Ray, or on a Ray cluster over S3."""
# The order of a first day's work; commands not named here follow in registration order.
WORKFLOW = (
    "manifest",
    "config",
    "train-classifier",
    "pseudo-label",
    "evaluate",
    "report",
    "train-segmenter",
    "predict",
    "retrain",
    "demo",
)
UNTIMED = ("config",)  # commands that only print: no start/end lines around them
WORKFLOW_EPILOG = """workflow:
  1. webseg manifest DIR --out DIR/manifest.jsonl     a folder per search keyword -> a collection
  2. webseg train-classifier --collection DIR --out model/classifier.pt
  3. webseg pseudo-label --collection DIR --model model/classifier.pt --out labels
  4. webseg evaluate / report --labels labels          how good are the labels (gt/ if you have it)
  5. webseg train-segmenter --labels labels --out model/segmenter
  6. webseg predict --model model/segmenter --collection NEW --out predicted
  webseg retrain runs 3-6 on a schedule; webseg demo runs 2-4 on a generated collection;
  webseg config prints the effective configuration of every step.

Every command ends with a short summary table of its result; --json prints that result as JSON
instead (the same keys as before; IoU, mIoU, J, AP and coverage in percent 0-100, seconds).
"""


def version() -> str:
    try:
        return metadata.version("webseg")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _global_flags(parser: argparse.ArgumentParser, in_subcommand: bool) -> None:
    """Flags accepted before and after the command name (a subcommand's default never overrides)."""
    default = argparse.SUPPRESS if in_subcommand else None
    flag_default = argparse.SUPPRESS if in_subcommand else False
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=flag_default,
        help="debug logging, Ray's own logs and progress bars, tracebacks on error",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.lower,
        default=default,
        help="level of WebSeg's own log lines (default: info)",
    )
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=flag_default,
        help="warnings and errors only, no progress bars",
    )
    parser.add_argument("--json", action="store_true", default=flag_default, help=summary.JSON_HELP)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML config file (sections: pseudo_label, classifier, ...)"
    )
    parser.add_argument(
        "--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    _global_flags(parser, in_subcommand=True)


def all_commands() -> dict:
    """Every subcommand, in workflow order: name -> (handler, add_arguments, help)."""
    # deferred: loads Ray only for commands that run on it
    from pipeline import commands
    from pipeline.retrain.run import RETRAIN_COMMANDS
    from pipeline.tool_commands import TOOL_COMMANDS

    found = {**TOOL_COMMANDS, **commands.COMMANDS, **RETRAIN_COMMANDS}
    ordered = {name: found[name] for name in WORKFLOW if name in found}
    return {**ordered, **{n: c for n, c in found.items() if n not in ordered}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webseg",
        description=DESCRIPTION,
        epilog=WORKFLOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"webseg {version()}")
    _global_flags(parser, in_subcommand=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, add_arguments, help_text) in all_commands().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        _common(command)
        command.set_defaults(handler=handler)
    return parser


def _configure(args: argparse.Namespace) -> None:
    level = args.log_level or ("debug" if args.verbose else "info")
    configure_logging(level, quiet=args.quiet, ray_logs=args.verbose)


def _print_result(command: str, result: object, as_json: bool = False) -> None:
    """A dict or summary.Result as the summary table (JSON with --json); a str as it is."""
    try:
        if isinstance(result, dict | summary.Result):
            print(summary.render(command, result, as_json=as_json))
        elif isinstance(result, str):
            print(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `webseg config | head`: the reader has gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _answer_version_early(argv: list[str] | None) -> None:
    """`webseg --version` without importing the commands (their configs pull in torch)."""
    early = argparse.ArgumentParser(prog="webseg", add_help=False)
    early.add_argument("--version", action="version", version=f"webseg {version()}")
    early.parse_known_args(argv)


# Commands whose output is resumed by running them again; an interrupted run says so.
RESUMABLE = ("pseudo-label", "predict")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`, `ray job stop`) handled like Ctrl-C: unwind, release, report."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _interrupted(args: argparse.Namespace, error: KeyboardInterrupt, seconds: float) -> int:
    how = "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"
    line = f"webseg {args.command}: {how} after {seconds:.1f} s"
    if args.command in RESUMABLE and getattr(args, "out", None):
        line += f"; what was written to {args.out} is kept: run the same command again to resume"
    print(line, file=sys.stderr)
    return 143 if isinstance(error, Terminated) else 130


def main(argv: list[str] | None = None) -> int:
    _answer_version_early(argv)
    args = build_parser().parse_args(argv)
    _configure(args)
    # only as a program (argv from sys.argv): callers of main([...]) keep their stderr untouched
    if argv is None and not ray_logs_wanted():
        with filtered_stderr():
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], object] = args.handler
    started = time.monotonic()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        if args.command in UNTIMED:
            result = handler(args)
        else:
            with stage(args.command, unit=""):
                result = handler(args)
    except KeyboardInterrupt as error:
        return _interrupted(args, error, time.monotonic() - started)
    except Exception as error:  # one line for the user; the traceback with --verbose
        if args.verbose:
            log.exception("failed")
        print(f"webseg {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    _print_result(args.command, result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
