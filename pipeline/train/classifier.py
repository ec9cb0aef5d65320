"""Train the multi-label CAM classifier on a collection's tags with Ray Train (V2) and MLflow.

    python -c "from pipeline.train.classifier import *; print(train_classifier(
        '../shared/data/dev', 'out/classifier', ClassifierTrainConfig()))"

The driver decodes images and sampled video frames once (frames carry their video's tags; items
with empty tags are negatives), squashes each to a fixed square and hands them to the workers as a
Ray Data dataset; workers augment on their device, train with BCE, and rank 0 logs to MLflow and
writes the final checkpoint (pipeline.checkpoint format) to out_uri.
Decoding lives in classifier_data.py; the worker loop and average precision in classifier_loop.py;
ClassifierTrainConfig in config.py; the trainer and where its state lives in common.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import ray
import torch

from pipeline.collection import read_collection
from pipeline.tracking import runs as tracking
from pipeline.train.classifier_data import load_training_set
from pipeline.train.classifier_loop import train_loop
from pipeline.train.common import absolute, make_trainer, state_uri
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.finetune import positive_weights

log = logging.getLogger(__name__)
COMMAND = "train-classifier"  # MLflow run names and the webseg.command tag


def _pos_weight(targets: np.ndarray, cfg: ClassifierTrainConfig) -> torch.Tensor:
    if not cfg.class_balanced:
        return torch.ones(targets.shape[1])
    return positive_weights(torch.from_numpy(targets), cfg.max_pos_weight)


def train_classifier(
    collection_uri: str, out_uri: str, cfg: ClassifierTrainConfig | None = None
) -> dict:
    """Train on a collection's tags; write the model to out_uri (a .pt file, or a folder).

    Returns {"map", "per_class_ap", "mlflow_run_id", "model_uri", "tracking_uri", "train_items",
    "skipped", "wall_s"}; map and APs are measured on the TRAINING items (un-augmented), not
    held-out data. The MLflow run (`train-classifier <out name>`) goes where
    tracking.tracking_uri_for says; Ray Train state beside the model (state_uri).
    """
    cfg = cfg or ClassifierTrainConfig()
    start = time.time()
    collection = read_collection(collection_uri)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=len(collection.classes) - 1),
                  tracking_uri=tracking.prepare_store(
                      tracking.tracking_uri_for(cfg.tracking_uri, out_uri)),
                  storage_path=absolute(cfg.storage_path or state_uri(out_uri)))  # fmt: skip
    data = load_training_set(collection, cfg)
    for item_id, reason in data.skipped.items():
        log.warning("training skips %s: %s", item_id, reason)
    order = np.random.default_rng(cfg.seed).permutation(len(data.images))
    rows = [{"image": data.images[i], "target": data.targets[i]} for i in order]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * cfg.workers)))
    loop_config = {"cfg": cfg, "classes": list(collection.classes), "out_uri": out_uri,
                   "per_worker": len(rows) // cfg.workers, "train_items": len(rows),
                   "skipped_items": len(data.skipped),
                   "run_name": tracking.run_name(COMMAND, out_uri),
                   "tags": tracking.run_tags(COMMAND, collection_uri, out_uri),
                   "pos_weight": _pos_weight(data.targets, cfg)}  # fmt: skip
    name = f"classifier-{int(time.time())}"
    trainer = make_trainer(
        train_loop,
        loop_config,
        dataset,
        cfg,
        name=name,
        storage_path=cfg.storage_path,
        num_to_keep=1,
    )
    result = trainer.fit()
    summary = {k: result.metrics[k] for k in ("map", "per_class_ap", "mlflow_run_id", "model_uri")}
    summary.update(train_items=len(rows), skipped=data.skipped, wall_s=time.time() - start,
                   tracking_uri=cfg.tracking_uri)  # fmt: skip
    return summary
