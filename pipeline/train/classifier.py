"""Train the multi-label CAM classifier on a collection's tags with Ray Train (V2) and MLflow.

    python -c "from pipeline.train.classifier import *; print(train_classifier(
        '../shared/data/dev', 'out/classifier', ClassifierTrainConfig()))"

The driver decodes images and sampled video frames once (frames carry their video's tags; items
with empty tags are negatives), squashes each to a fixed square and hands them to the workers as a
Ray Data dataset; workers augment on their device, train with BCE, and rank 0 logs to MLflow and
writes the final checkpoint (pipeline.checkpoint format) to out_uri.
"""

from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import mlflow
import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from pipeline import checkpoint, schema, tracking
from pipeline.collection import Collection, Item, read_collection
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.models.classifier import CamClassifier, ModelConfig
from pipeline.storage import StorageError
from pipeline.train.augment import AugmentConfig, augment_batch, eval_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # num_classes: from the collection
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # crop, flip, colour jitter
    epochs: int = 30  # passes over the images and sampled frames
    batch_size: int = 16  # global batch, split across workers
    lr: float = 3e-3  # AdamW peak rate, warm-up then cosine (dev: 3e-3 train mAP 0.52, 1e-3 0.33)
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_epochs: int = 1  # linear learning-rate warm-up
    backbone_lr_mult: float = 0.1  # backbone lr factor when pretrained_uri is set (head at full lr)
    image_size: int = 160  # training crop size in pixels (square)
    store_scale: float = 1.25  # decoded items are kept at image_size * store_scale, squashed square
    workers: int = 2  # Ray Train workers (data-parallel)
    cpus_per_worker: float = 1.0  # logical CPUs each worker reserves; torch threads follow it
    use_gpu: bool | str = "auto"  # True, False or "auto" (GPUs in ray.cluster_resources())
    video_frame_stride: int = 8  # every n-th video frame joins training with the video's tags
    max_frames_per_video: int = 16  # cap so long videos do not swamp the images
    seed: int = 0  # weights, shuffling and augmentation
    pretrained_uri: str | None = None  # torch ResNet weights (e.g. torchvision's) for the backbone
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI  # MLflow; relative sqlite made absolute
    experiment: str = "webseg-classifier"  # MLflow experiment name
    storage_path: str | None = None  # Ray Train checkpoint storage; s3:// on multi-node clusters


@dataclass
class TrainingSet:
    images: np.ndarray  # N x S x S x 3 uint8
    targets: np.ndarray  # N x C float32 multi-hot over foreground classes
    skipped: dict[str, str]  # item id -> reason it was left out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _decode_item(item: Item, size: int, cfg: ClassifierTrainConfig) -> list[np.ndarray]:
    if item.kind == schema.KIND_VIDEO:
        decode = DecodeConfig(
            frame_stride=cfg.video_frame_stride, max_frames_per_video=cfg.max_frames_per_video
        )
        return [_fit(frame, size) for _, frame in read_video_frames(item.uri, decode)]
    return [_fit(read_image(item.uri), size)]


def _try_decode(item: Item, size: int, cfg: ClassifierTrainConfig) -> list[np.ndarray] | str:
    if item.error:
        return item.error
    try:
        return _decode_item(item, size, cfg)
    except (DecodeError, FileNotFoundError, StorageError) as error:
        return str(error) or type(error).__name__


def load_training_set(
    collection: Collection, cfg: ClassifierTrainConfig, threads: int = 4
) -> TrainingSet:
    """Decode every usable item (video frames sampled) into squashed squares + multi-hot targets."""
    size = round(cfg.image_size * cfg.store_scale)
    num_classes = len(collection.classes) - 1
    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(lambda item: _try_decode(item, size, cfg), collection.items))
    images, targets, skipped = [], [], {}
    for item, result in zip(collection.items, decoded, strict=True):
        if isinstance(result, str) or not result:
            skipped[item.id] = result or "no frames"
            continue
        target = np.zeros(num_classes, np.float32)
        target[[t - 1 for t in item.tag_ids]] = 1.0
        images += result
        targets += [target] * len(result)
    if not images:
        raise ValueError(f"no usable training items in {collection.root} ({len(skipped)} skipped)")
    return TrainingSet(np.stack(images), np.stack(targets), skipped)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: scores (N,) float, labels (N,) {0, 1}; nan when there is no positive."""
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / positives)


def per_class_ap(
    scores: np.ndarray, targets: np.ndarray, classes: tuple[str, ...]
) -> dict[str, float]:
    """{class name: AP} of foreground classes with a positive; scores, targets: N x C."""
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    return {classes[c + 1]: ap for c, ap in enumerate(aps) if not np.isnan(ap)}


def resolve_use_gpu(use_gpu: bool | str) -> bool:
    """ "auto" -> whether the Ray cluster has GPUs (never torch.cuda on the driver)."""
    if use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    if isinstance(use_gpu, bool):
        return use_gpu
    raise ValueError(f"use_gpu must be true, false or 'auto', got {use_gpu!r}")


def _gather(array: np.ndarray) -> np.ndarray:
    """Concatenate an array's rows across training workers (identity for one worker)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return array
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def _mean_across_workers(value: float, count: int) -> float:
    totals = _gather(np.array([[value * count, count]], dtype=np.float64)).sum(axis=0)
    return float(totals[0] / max(totals[1], 1))


def _batches(shard, batch_size: int, shuffle_buffer: int, device: torch.device):
    """Batches of this worker's shard; shuffle_buffer > 0 shuffles locally and drops the last
    partial batch (BatchNorm cannot train on one sample)."""
    shuffle = shuffle_buffer > 0
    return shard.iter_torch_batches(
        batch_size=batch_size,
        dtypes={"image": torch.uint8, "target": torch.float32},
        device=device,
        local_shuffle_buffer_size=max(batch_size, shuffle_buffer) if shuffle else None,
        drop_last=shuffle,
    )


def _warmup_cosine(warmup: int, total: int):
    """Learning-rate factor per optimizer step: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _build_model(cfg: ClassifierTrainConfig) -> tuple[CamClassifier, torch.optim.Optimizer]:
    model = CamClassifier(cfg.model)
    backbone_lr = cfg.lr
    if cfg.pretrained_uri:
        report = checkpoint.load_pretrained_backbone(model, cfg.pretrained_uri)
        log.info("pretrained backbone %s: %s", cfg.pretrained_uri, report.summary())
        backbone_lr = cfg.lr * cfg.backbone_lr_mult
    backbone, head = model.param_groups()
    groups = [{"params": backbone, "lr": backbone_lr}, {"params": head, "lr": cfg.lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    return model, optimizer


def _train_epoch(model, optimizer, scheduler, batches, cfg, gen) -> tuple[float, np.ndarray, ...]:
    """One pass; (mean loss, scores, targets) of the augmented batches this worker saw."""
    model.train()
    losses, scores, targets = [], [], []
    for batch in batches:
        logits = model(augment_batch(batch["image"], cfg.image_size, cfg.augment, gen))
        loss = F.binary_cross_entropy_with_logits(logits, batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        scores.append(torch.sigmoid(logits.detach()).cpu().numpy())
        targets.append(batch["target"].cpu().numpy())
    empty = np.zeros((0, cfg.model.num_classes), np.float32)
    if not losses:
        return float("nan"), empty, empty
    return float(np.mean(losses)), np.concatenate(scores), np.concatenate(targets)


@torch.inference_mode()
def _evaluate(model, batches, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(scores, targets) of this worker's un-augmented items, resized to image_size."""
    model.eval()
    scores, targets = [], []
    for batch in batches:
        scores.append(
            torch.sigmoid(model(eval_batch(batch["image"], cfg.image_size))).cpu().numpy()
        )
        targets.append(batch["target"].cpu().numpy())
    empty = np.zeros((0, cfg.model.num_classes), np.float32)
    return (np.concatenate(scores), np.concatenate(targets)) if scores else (empty, empty)


def _map(aps: dict[str, float]) -> float:
    return float(np.mean(list(aps.values()))) if aps else float("nan")


def _report(model, cfg, classes, metrics: dict, rank: int) -> None:
    """ray.train.report with a checkpoint of rank 0's weights (all ranks must call it; the
    driver's Result.metrics are those of the last report that carried a checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        ckpt = None
        if rank == 0:
            checkpoint.save_model(model, cfg.model, folder, classes, extra={"metrics": metrics})
            ckpt = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=ckpt)


def _finish(model, cfg, classes, out_uri, shard, batch_size, device, run) -> dict:
    """Final un-augmented pass over the training items; rank 0 writes and logs the model."""
    scores, targets = _evaluate(model, _batches(shard, batch_size, 0, device), cfg)
    aps = per_class_ap(_gather(scores), _gather(targets), classes)
    final = {"map": _map(aps), "per_class_ap": aps, "model_uri": out_uri, "mlflow_run_id": None}
    if run:
        tracking.log_metrics(
            {"train_map": final["map"]} | {f"train_ap.{k}": v for k, v in aps.items()}
        )
        model_file = checkpoint.save_model(model, cfg.model, out_uri, classes, {"train_ap": aps})
        tracking.log_file(model_file, artifact_path="model")
        final["mlflow_run_id"] = run.info.run_id
        mlflow.end_run()
    return final


def _train_loop(config: dict) -> None:
    """Ray Train worker entry point: every rank trains; rank 0 alone talks to MLflow."""
    cfg: ClassifierTrainConfig = config["cfg"]
    classes, per_worker = config["classes"], config["per_worker"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)  # same initial weights on every worker
    device = ray.train.torch.get_device()
    model, optimizer = _build_model(cfg)
    model = ray.train.torch.prepare_model(model)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
    batch_size = max(2, cfg.batch_size // world)
    steps = max(1, per_worker // batch_size)
    schedule = _warmup_cosine(cfg.warmup_epochs * steps, cfg.epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    shard = ray.train.get_dataset_shard("train")
    run = tracking.start_run(cfg.tracking_uri, cfg.experiment) if rank == 0 else None
    if run:
        tracking.log_config(cfg)
        mlflow.log_params({k: config[k] for k in ("train_items", "skipped_items")})
    for epoch in range(cfg.epochs):
        start = time.time()
        batches = _batches(shard, batch_size, per_worker, device)
        loss, scores, targets = _train_epoch(model, optimizer, scheduler, batches, cfg, gen)
        aps = per_class_ap(_gather(scores), _gather(targets), classes)
        metrics = {"epoch": epoch, "loss": _mean_across_workers(loss, len(scores)),
                   "train_running_map": _map(aps), "epoch_s": time.time() - start}  # fmt: skip
        if run:
            tracking.log_metrics(metrics, step=epoch)
        _report(model, cfg, classes, metrics, rank)
    final = _finish(model, cfg, classes, config["out_uri"], shard, batch_size, device, run)
    _report(model, cfg, classes, final, rank)


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
        storage_path=cfg.storage_path,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
    )
    return ray.train.torch.TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=scaling,
        run_config=run,
        datasets={"train": dataset},
    )


def train_classifier(
    collection_uri: str, out_uri: str, cfg: ClassifierTrainConfig | None = None
) -> dict:
    """Train on a collection's tags; write the model to out_uri (a .pt file, or a folder).

    Returns {"map", "per_class_ap", "mlflow_run_id", "model_uri", "train_items", "skipped",
    "wall_s"}; map and APs are measured on the TRAINING items (un-augmented), not held-out data.
    """
    cfg = cfg or ClassifierTrainConfig()
    start = time.time()
    collection = read_collection(collection_uri)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=len(collection.classes) - 1),
                  tracking_uri=tracking.resolve_tracking_uri(cfg.tracking_uri))  # fmt: skip
    data = load_training_set(collection, cfg)
    for item_id, reason in data.skipped.items():
        log.warning("training skips %s: %s", item_id, reason)
    order = np.random.default_rng(cfg.seed).permutation(len(data.images))
    rows = [{"image": data.images[i], "target": data.targets[i]} for i in order]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * cfg.workers)))
    loop_config = {"cfg": cfg, "classes": list(collection.classes), "out_uri": out_uri,
                   "per_worker": len(rows) // cfg.workers, "train_items": len(rows),
                   "skipped_items": len(data.skipped)}  # fmt: skip
    result = _trainer(cfg, loop_config, dataset).fit()
    summary = {k: result.metrics[k] for k in ("map", "per_class_ap", "mlflow_run_id", "model_uri")}
    summary.update(train_items=len(rows), skipped=data.skipped, wall_s=time.time() - start)
    return summary
