"""What each `webseg` subcommand does: argument definitions and handlers (see cli.py).

`manifest` and `config` are in tool_commands.py, `retrain` in retrain/run.py. train-segmenter and predict
read one section of --config (`segmenter`: SegmenterTrainConfig, `predict`: PredictConfig).
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline import preflight as checks
from pipeline.collection import require_manifest
from pipeline.config import from_dict, load_yaml
from pipeline.evaluate.inputs import require_ground_truth
from pipeline.evaluate.score import evaluate_labels
from pipeline.evaluate.summary import format_breakdown
from pipeline.output import require_label_set
from pipeline.report.build import build_report
from pipeline.settings import PredictConfig, load_settings
from pipeline.summary import Result
from pipeline.tracking.runs import log_evaluation
from pipeline.train.config import SegmenterTrainConfig


def _settings(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    return load_settings(args.config, overrides)


def _section(args: argparse.Namespace, name: str, cls: type, overrides: dict[str, Any]):
    """Dataclass cls from the YAML section `name` of --config, with non-None overrides on top
    (only that section is read and validated, unlike load_settings)."""
    data = dict(load_yaml(getattr(args, "config", None)).get(name) or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, f"{name}.")


def _args_train_classifier(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True, help="collection folder or manifest URI")
    p.add_argument("--out", required=True, help="model URI to write (a .pt file or a folder)")
    p.add_argument("--epochs", type=int, help="training epochs (classifier.epochs)")
    p.add_argument("--workers", type=int, help="Ray Train workers (classifier.workers)")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else mlflow.db in --out's folder)",
    )


def train_classifier(args: argparse.Namespace) -> dict:
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray
    from pipeline.train.classifier import train_classifier as train

    cfg = _settings(
        args,
        {
            "classifier.epochs": args.epochs,
            "classifier.workers": args.workers,
            "classifier.tracking_uri": args.tracking_uri,
        },
    )
    require_manifest(args.collection)
    init_ray(args.ray_address)
    return train(args.collection, args.out, cfg.classifier)


def _args_pseudo_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True, help="collection folder or manifest URI")
    p.add_argument("--model", required=True, help="classifier URI, or 'none' for objectness only")
    p.add_argument("--out", required=True, help="label set URI (rerun with the same URI to resume)")
    p.add_argument("--overwrite", action="store_true", help="remove the label set at --out first")


def pseudo_label(args: argparse.Namespace) -> dict:
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.dataflow import run_pseudo_label
    from pipeline.cluster.runtime import init_ray

    cfg = _settings(args)
    model = None if args.model.lower() == "none" else args.model
    checks.pseudo_label(
        args.collection, model, args.out, cfg.pseudo_label, overwrite=args.overwrite
    )
    init_ray(args.ray_address)
    info = run_pseudo_label(args.collection, model, args.out, cfg.pseudo_label)
    return {"out": args.out, "counts": info["counts"], "wall_seconds": info["wall_seconds"]}


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="label set URI (pseudo-label or predict output)")
    p.add_argument("--collection", required=True, help="collection with gt/ beside media/")


def evaluate(args: argparse.Namespace) -> Result:
    """The summary table, under the per-class and per-video tables (--json: the whole result)."""

    result = evaluate_labels(args.labels, args.collection)
    log_evaluation(args.labels, args.collection, result)  # into the labels' MLflow run, if any
    return Result(result, details=format_breakdown(result))


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="label set URI")
    p.add_argument("--collection", help="collection URI (adds ground truth and IoU)")
    p.add_argument("--out", help="HTML URI (default: LABELS/report.html)")


def report(args: argparse.Namespace) -> dict:

    return {"report": build_report(args.labels, args.collection, args.out)}


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
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray
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
        action=argparse.BooleanOptionalAction,
        default=None,
        help="predict only background and each item's tags (default: predict.restrict_to_tags, "
        "auto: when the collection has tags)",
    )
    p.add_argument("--overwrite", action="store_true", help="remove the label set at --out first")


def predict(args: argparse.Namespace) -> dict:
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray
    from pipeline.predict_run import run_predict, with_tracking_uri

    cfg = _section(
        args,
        "predict",
        PredictConfig,
        {"tracking_uri": args.tracking_uri, "restrict_to_tags": args.restrict_to_tags},
    )
    cfg = with_tracking_uri(cfg, args.model, args.out)  # once, before preflight loads the model
    checks.predict(args.collection, args.model, args.out, cfg, overwrite=args.overwrite)
    if cfg.resources.actors != 0:
        init_ray(args.ray_address)
    info = run_predict(args.model, args.collection, args.out, cfg)
    return {"out": args.out, "counts": info["counts"], "wall_seconds": info["wall_seconds"]}


def _args_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="folder for everything the demo writes")
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (default: config)")


def demo(args: argparse.Namespace) -> Result:
    # deferred: loads torch/Ray/MLflow only for the commands that use them
    from pipeline.demo import run_demo

    return run_demo(args.out, args.config, args.epochs, args.ray_address)


COMMANDS = {
    "train-classifier": (
        train_classifier,
        _args_train_classifier,
        "train the multi-label CAM classifier with Ray Train",
    ),
    "pseudo-label": (
        pseudo_label,
        _args_pseudo_label,
        "label a collection: decode -> CAM -> refine -> masks + manifest",
    ),
    "evaluate": (evaluate, _args_evaluate, "score a label set against a collection's ground truth"),
    "report": (report, _args_report, "write a static HTML report of a label set"),
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
    "demo": (demo, _args_demo, "run the whole job on a generated sample collection, locally"),
}
