"""Shared parts of the CAM-stage cost benchmarks (layer_cam_cost.py, appearance_cost.py): their
arguments, the classifier with its ImageNet prior, and the side-by-side timing loop."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from pipeline.checkpoint import load_classifier
from pipeline.models.imagenet_prior import load_prior


def cost_args(doc: str) -> argparse.Namespace:
    """--model, --collection, --limit and --chunk, with the script's docstring as description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev")
    )
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=8)
    return parser.parse_args()


def classifier_with_prior(model_uri: str):
    """(model, its ImageNet prior head or None) as the CAM stage loads them."""
    model, model_cfg, classes = load_classifier(model_uri)
    return model, load_prior(model.backbone, model_cfg.backbone, list(classes))


def seconds_in_turn(chunks, runs: dict[str, Callable]) -> dict[str, float]:
    """Each run(images, tags) on every (images, tags) chunk, the runs in turn within a chunk (a
    busy machine slows them alike) -> total seconds per run name."""
    seconds = dict.fromkeys(runs, 0.0)
    for images, tags in chunks:
        for name, run in runs.items():
            began = time.perf_counter()
            run(images, tags)
            seconds[name] += time.perf_counter() - began
    return seconds
