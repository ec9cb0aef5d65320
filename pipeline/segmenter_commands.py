"""`webseg train-segmenter` and `webseg predict`: argument definitions and handlers (see cli.py).

Config sections read from --config: `segmenter` (SegmenterTrainConfig), `predict` (PredictConfig).
Until cli.py registers these commands: python -m pipeline.segmenter_commands train-segmenter ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pipeline.config import from_dict, load_yaml
from pipeline.summary import render


def _section(args: argparse.Namespace, name: str, cls: type, overrides: dict[str, Any]):
    """Dataclass cls from the YAML section `name` of --config, with non-None overrides on top."""
    data = dict(load_yaml(getattr(args, "config", None)).get(name) or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, f"{name}.")


def _args_train_segmenter(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels", required=True, help="pseudo-label set URI (trains on its labelled rows)"
    )
    p.add_argument(
        "--out", required=True, help="model URI to write (a folder for model.pt, or a .pt file)"
    )
    p.add_argument("--val-collection", help="held-out collection with gt/, scored every epoch")
    p.add_argument("--epochs", type=int, help="training epochs (segmenter.epochs)")
    p.add_argument("--workers", type=int, help="Ray Train workers (segmenter.workers)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint under --out (also automatic when one exists)",
    )
    p.add_argument(
        "--init-from", help="classifier checkpoint or backbone state dict for the backbone"
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        help="train only on labelled rows whose manifest confidence is at least this "
        "(segmenter.min_confidence; label sets without the column train on every row)",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else OUT's folder's mlflow.db)",
    )


def train_segmenter(args: argparse.Namespace) -> dict:
    from pipeline.cluster.runtime import init_ray
    from pipeline.evaluate_inputs import require_ground_truth
    from pipeline.output import require_label_set
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter import train_segmenter as train

    cfg = _section(
        args,
        "segmenter",
        SegmenterTrainConfig,
        {
            "epochs": args.epochs,
            "workers": args.workers,
            "val_collection": args.val_collection,
            "init_from": args.init_from,
            "min_confidence": args.min_confidence,
            "tracking_uri": args.tracking_uri,
        },
    )
    require_label_set(args.labels)
    if cfg.val_collection:  # its gt is read inside the training workers: check it here
        require_ground_truth(cfg.val_collection)
    init_ray(args.ray_address)
    return train(args.labels, args.out, cfg, resume=args.resume)


def _args_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="segmenter URI: a file/folder or models:/NAME@ALIAS"
    )
    p.add_argument("--collection", required=True, help="collection folder or manifest URI")
    p.add_argument(
        "--out", required=True, help="label set URI to write (masks, manifest.parquet, run.json)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow store of models:/ URIs (default: MLFLOW_TRACKING_URI, else mlflow.db "
        "beside --out)",
    )
    p.add_argument(
        "--restrict-to-tags",
        action="store_true",
        default=None,
        help="predict only background and each item's tags",
    )
    p.add_argument("--overwrite", action="store_true", help="remove the label set at --out first")


def predict(args: argparse.Namespace) -> dict:
    from pipeline.cluster.runtime import init_ray
    from pipeline.predict_run import run_predict, with_tracking_uri
    from pipeline.preflight import predict as preflight
    from pipeline.settings import PredictConfig

    cfg = _section(
        args,
        "predict",
        PredictConfig,
        {"tracking_uri": args.tracking_uri, "restrict_to_tags": args.restrict_to_tags},
    )
    cfg = with_tracking_uri(cfg, args.model, args.out)  # once, before preflight loads the model
    preflight(args.collection, args.model, args.out, cfg, overwrite=args.overwrite)
    if cfg.resources.actors != 0:
        init_ray(args.ray_address)
    info = run_predict(args.model, args.collection, args.out, cfg)
    return {"out": args.out, "counts": info["counts"], "wall_seconds": info["wall_seconds"]}


SEGMENTER_COMMANDS = {
    "train-segmenter": (
        train_segmenter,
        _args_train_segmenter,
        "train the DeepLab segmenter on pseudo-labels with Ray Train, tracked in MLflow",
    ),
    "predict": (
        predict,
        _args_predict,
        "segment a collection with a trained segmenter (pseudo-label format)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point shaped like `webseg` (until cli.py registers these commands)."""
    parser = argparse.ArgumentParser(prog="webseg")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (handler, add_arguments, help_text) in SEGMENTER_COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        add_arguments(command)
        command.add_argument("--config", help="YAML config file")
        command.add_argument("--ray-address", help="Ray cluster address")
        command.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(render(args.command, args.handler(args), as_json=True))  # as `webseg --json COMMAND`
    return 0


if __name__ == "__main__":
    sys.exit(main())
