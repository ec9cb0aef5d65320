"""Train the multi-label CAM classifier on a collection's tags with Ray Train (V2) and MLflow.

    python -c "from pipeline.train.classifier import *; print(train_classifier(
        '../shared/data/dev', 'out/classifier', ClassifierTrainConfig()))"

The driver lists the usable items (id, uri, kind, tag ids: one small row each, in a seeded order)
as a lazy Ray Data dataset whose tasks decode images and sampled video frames (frames carry their
video's tags; items with empty tags are negatives) into fixed squares; no pixel reaches the driver.
A first pass in Ray Data counts the rows, the positives per class and the items that could not be
decoded (one summary row per batch reaches the driver). Ray Train workers then stream their shard
(finetune=head: once, pooling features; otherwise every epoch, augmenting on their device), and
rank 0 logs to MLflow and writes the final checkpoint (pipeline.checkpoint format) to out_uri.
Decoding lives in classifier_data.py; the worker loop and average precision in classifier_loop.py;
ClassifierTrainConfig in config.py; the trainer and where its state lives in common.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import ray
import torch

from pipeline.collection import read_collection
from pipeline.tracking import runs as tracking
from pipeline.train.classifier_data import (
    Census,
    count,
    decoded_dataset,
    item_rows,
    training_dataset,
)
from pipeline.train.classifier_loop import train_loop
from pipeline.train.common import absolute, make_trainer, state_uri
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.finetune import balanced_weights

log = logging.getLogger(__name__)
COMMAND = "train-classifier"  # MLflow run names and the webseg.command tag


def _pos_weight(census: Census, cfg: ClassifierTrainConfig) -> torch.Tensor:
    if not cfg.class_balanced:
        return torch.ones(len(census.positives))
    positives = torch.from_numpy(census.positives).float()
    return balanced_weights(positives, census.rows, cfg.max_pos_weight)


def _count(decoded, collection, cfg: ClassifierTrainConfig) -> Census:
    census = count(decoded, len(collection.classes) - 1)
    for item_id, reason in census.skipped.items():
        log.warning("training skips %s: %s", item_id, reason)
    if not census.rows:
        raise ValueError(
            f"no usable training items in {collection.root} ({len(census.skipped)} skipped; a "
            "collection of videos only needs classifier.video_frames: true)"
        )
    return census


def _check_cpus(cfg: ClassifierTrainConfig) -> None:
    """Warn when the workers would leave no CPU for the decode tasks (training would hang)."""
    spare = ray.cluster_resources().get("CPU", 0) - cfg.workers * cfg.cpus_per_worker
    if spare < cfg.data_cpus:
        log.warning("the Ray cluster has %.2f CPUs beside the %d training workers, fewer than a "
                    "decode task's data_cpus %.2f: decoding waits for more CPUs",
                    spare, cfg.workers, cfg.data_cpus)  # fmt: skip


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
    rows = item_rows(collection, cfg)
    if not rows:
        raise ValueError(f"no training items in {collection.root} (a collection of videos only "
                         "needs classifier.video_frames: true)")  # fmt: skip
    _check_cpus(cfg)
    decoded = decoded_dataset(rows, cfg)
    del rows  # the dataset's blocks hold them now
    census = _count(decoded, collection, cfg)
    loop_config = {"cfg": cfg, "classes": list(collection.classes), "out_uri": out_uri,
                   "per_worker": census.rows // cfg.workers, "train_items": census.rows,
                   "skipped_items": len(census.skipped),
                   "run_name": tracking.run_name(COMMAND, out_uri),
                   "tags": tracking.run_tags(COMMAND, collection_uri, out_uri),
                   "pos_weight": _pos_weight(census, cfg)}  # fmt: skip
    name = f"classifier-{int(time.time())}"
    trainer = make_trainer(
        train_loop,
        loop_config,
        training_dataset(decoded),
        cfg,
        name=name,
        storage_path=cfg.storage_path,
        num_to_keep=1,
    )
    result = trainer.fit()
    summary = {k: result.metrics[k] for k in ("map", "per_class_ap", "mlflow_run_id", "model_uri")}
    summary.update(train_items=census.rows, skipped=census.skipped, wall_s=time.time() - start,
                   tracking_uri=cfg.tracking_uri)  # fmt: skip
    return summary
