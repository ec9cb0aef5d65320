"""The `webseg` command.

    webseg train-classifier --collection URI --out MODEL_URI [--config FILE] [--epochs N] [--workers N]
    webseg pseudo-label     --collection URI --model MODEL_URI --out LABELS_URI [--config FILE]
    webseg evaluate         --labels LABELS_URI --collection URI [--json]
    webseg report           --labels LABELS_URI [--collection URI]
    webseg train-segmenter  --labels LABELS_URI --out MODEL_URI [--val-collection URI]
                            [--epochs N] [--workers N] [--resume]
    webseg predict          --model MODEL_URI --collection URI --out LABELS_URI
    webseg retrain          (see webseg retrain --help)
    webseg demo             [--out DIR]

URIs are local paths or s3://...; exit status 0 on success, non-zero with a one-line reason on error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from pipeline import commands

log = logging.getLogger("webseg")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML config file (sections: pseudo_label, classifier, ...)"
    )
    parser.add_argument(
        "--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def all_commands() -> dict:
    from pipeline.retrain import RETRAIN_COMMANDS
    from pipeline.segmenter_commands import SEGMENTER_COMMANDS

    return {**commands.COMMANDS, **SEGMENTER_COMMANDS, **RETRAIN_COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webseg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (handler, add_arguments, help_text) in all_commands().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        _common(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Callable[[argparse.Namespace], object] = args.handler
    try:
        result = handler(args)
    except KeyboardInterrupt:
        print("webseg: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for the user; the traceback with --verbose
        if args.verbose:
            log.exception("failed")
        print(f"webseg {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, str):
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
