"""The notebook API: each step of the workflow as one call with plain arguments, Ray started on
first use (a local Ray, or `ray_address` / RAY_ADDRESS). Re-exported lazily by `pipeline`:

    from pipeline import train_classifier, pseudo_label, evaluate_labels, build_report
    train_classifier("dev", "model/classifier.pt", {"epochs": 3})
    pseudo_label("dev", "model/classifier.pt", "labels")
    evaluate_labels("labels", "dev")["miou"]

`config` is a section's dataclass, a dict of that section's keys, a WebSegConfig, or a YAML file
path (its section is used), or None for the defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.settings import WebSegConfig, load_settings


def section_config(config: Any, section: str) -> Any:
    """The dataclass of config section `section` (e.g. "pseudo_label") from any accepted form."""

    if config is None or isinstance(config, str):
        return getattr(load_settings(config), section)
    if isinstance(config, WebSegConfig):
        return getattr(config, section)
    if isinstance(config, dict):
        overrides = {f"{section}.{key}": value for key, value in config.items()}
        return getattr(load_settings(None, overrides), section)
    if dataclasses.is_dataclass(config):
        return config
    raise TypeError(f"config: expected None, a path, a dict or a dataclass, got {config!r}")


def train_classifier(
    collection: str, out: str, config: Any = None, ray_address: str | None = None
) -> dict:
    """Train the CAM classifier on a collection's tags; returns mAP, run id and model URI."""
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray
    from pipeline.train.classifier import train_classifier as train

    init_ray(ray_address)
    return train(collection, out, section_config(config, "classifier"))


def pseudo_label(
    collection: str,
    model: str | None,
    out: str,
    config: Any = None,
    overwrite: bool = False,
    ray_address: str | None = None,
) -> dict:
    """Label a collection into `out` (model None: objectness only); returns run.json's content."""
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.dataflow import run_pseudo_label
    from pipeline.cluster.runtime import init_ray

    init_ray(ray_address)
    cfg = section_config(config, "pseudo_label")
    return run_pseudo_label(collection, model, out, cfg, overwrite=overwrite)


def train_segmenter(
    labels: str, out: str, config: Any = None, resume: bool = False, ray_address: str | None = None
) -> dict:
    """Train the DeepLab segmenter on a label set's labelled rows; returns its summary."""
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray
    from pipeline.train.segmenter import train_segmenter as train

    init_ray(ray_address)
    return train(labels, out, section_config(config, "segmenter"), resume)
