"""The classifier's Ray Train worker loop (see pipeline/train/classifier.py for the driver side).

Every worker streams its Ray Data shard (`get_dataset_shard("train")`, decoded in Ray Data tasks on
every pass). finetune=head: one pass pools the frozen backbone's features, gathered on every rank,
and fits the class head on them. Otherwise every worker augments and trains with BCE on its shard
and reports rank 0's weights each epoch. Rank 0 alone talks to MLflow and writes the final model.
Average precision is measured on the training items the workers see.
"""

from __future__ import annotations

import logging
import tempfile
import time

import mlflow
import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F

from pipeline import checkpoint
from pipeline.models.classifier import CamClassifier
from pipeline.tracking import runs as tracking
from pipeline.train import erasing_rounds, finetune
from pipeline.train.augment import augment_batch, eval_batch
from pipeline.train.classifier_data import store_size
from pipeline.train.common import concat_across_workers, mean_across_workers
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.finetune import average_precision

log = logging.getLogger(__name__)


def per_class_ap(
    scores: np.ndarray, targets: np.ndarray, classes: tuple[str, ...]
) -> dict[str, float]:
    """{class name: AP} of foreground classes with a positive; scores, targets: N x C."""
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    return {classes[c + 1]: ap for c, ap in enumerate(aps) if not np.isnan(ap)}


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


def _build_model(cfg: ClassifierTrainConfig) -> tuple[CamClassifier, dict | None]:
    """The classifier with its initial backbone weights and frozen parts; (model, weights info)."""
    model = CamClassifier(cfg.model)
    weights = finetune.initial_weights(model.backbone, cfg.model.backbone, cfg.pretrained)
    if weights:
        log.info("backbone %s from %s", cfg.model.backbone, weights.origin)
    finetune.freeze(model.backbone, cfg.finetune, cfg.trainable_stages)
    return model, weights.as_dict() if weights else None


def _optimizer(model: CamClassifier, cfg: ClassifierTrainConfig) -> torch.optim.Optimizer:
    backbone_lr = cfg.lr * (cfg.backbone_lr_mult if cfg.pretrained != "none" else 1.0)
    backbone, head = model.param_groups()
    groups = [{"params": [p for p in backbone if p.requires_grad], "lr": backbone_lr},
              {"params": head, "lr": cfg.lr}]  # fmt: skip
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _train_epoch(
    model, optimizer, scheduler, batches, cfg, gen, pos_weight
) -> tuple[float, np.ndarray, ...]:
    """One pass; (mean loss, scores, targets) of the augmented batches this worker saw."""
    inner = checkpoint.unwrap(model)
    finetune.set_train_mode(model, inner.backbone, cfg.freeze_bn and cfg.pretrained != "none")
    losses, scores, targets = [], [], []
    for batch in batches:
        images = augment_batch(batch["image"], cfg.image_size, cfg.augment, gen, inner.input_stats)
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, batch["target"], pos_weight=pos_weight)
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
    stats = checkpoint.unwrap(model).input_stats
    scores, targets = [], []
    for batch in batches:
        scores.append(
            torch.sigmoid(model(eval_batch(batch["image"], cfg.image_size, stats))).cpu().numpy()
        )
        targets.append(batch["target"].cpu().numpy())
    empty = np.zeros((0, cfg.model.num_classes), np.float32)
    return (np.concatenate(scores), np.concatenate(targets)) if scores else (empty, empty)


def _map(aps: dict[str, float]) -> float:
    return float(np.mean(list(aps.values()))) if aps else float("nan")


def _rows(parts: list[torch.Tensor], columns: int) -> np.ndarray:
    return torch.cat(parts).cpu().numpy() if parts else np.zeros((0, columns), np.float32)


def _pool_shard(model: CamClassifier, shard, cfg, device) -> dict:
    """One pass over this worker's shard: pooled features at head_sizes x flip ("fit", with
    "fit_targets" and "fit_images", the image each row pools) and at image_size ("eval", with
    "targets": the final mAP's inputs). With erasing rounds also the images themselves ("images",
    N x S x S x 3 uint8: the rounds erase them, so they stay in this worker's memory)."""
    fit, fit_targets, fit_images, evals, targets, kept = [], [], [], [], [], []
    stats, views, seen = model.input_stats, 2 * len(cfg.head_sizes), 0
    for batch in _batches(shard, cfg.batch_size, 0, device):
        images = batch["image"]
        fit.append(finetune.pooled_features(model.backbone, images, cfg.head_sizes, stats))
        fit_targets.append(batch["target"].repeat(views, 1))
        fit_images.append(torch.arange(seen, seen + len(images)).repeat(views))
        evals.append(finetune.pooled(model.backbone, images, cfg.image_size, stats))
        targets.append(batch["target"])
        seen += len(images)
        if cfg.erasing_rounds:
            kept.append(images.cpu().numpy())
    width, classes = model.backbone.out_channels, cfg.model.num_classes
    side = store_size(cfg)
    return {
        "fit": _rows(fit, width),
        "fit_targets": _rows(fit_targets, classes),
        "fit_images": torch.cat(fit_images).numpy() if fit_images else np.zeros(0, np.int64),
        "eval": _rows(evals, width),
        "targets": _rows(targets, classes),
        "images": np.concatenate(kept) if kept else np.zeros((0, side, side, 3), np.uint8),
    }


def _fit_head(model: CamClassifier, shard, cfg, device, pos_weight) -> tuple[dict, tuple]:
    """finetune=head: pool the frozen backbone's features of every item (sizes x flip) once,
    gather them from all workers and fit the class head on them (the same fit on every rank).
    Returns (timings, (scores, targets) of every worker's items at image_size)."""
    model.eval()
    started = time.time()
    local = _pool_shard(model, shard, cfg, device)
    gathered = {k: concat_across_workers(local[k]) for k in ("fit", "fit_targets", "fit_images",
                                                              "eval", "targets")}  # fmt: skip
    extracted = time.time() - started
    log.info("classifier head: pooled features of %d views in %.0f s; fitting the head",
             len(gathered["fit"]), extracted)  # fmt: skip
    weight = finetune.fit_linear_head(
        torch.from_numpy(gathered["fit"]), torch.from_numpy(gathered["fit_targets"]),
        pos_weight, cfg.head_steps, cfg.head_lr, cfg.weight_decay, cfg.seed,
    )  # fmt: skip
    with torch.no_grad():
        model.classifier.weight.copy_(weight.view_as(model.classifier.weight))
    scores = torch.sigmoid(torch.from_numpy(gathered["eval"]) @ weight.cpu().T).numpy()
    timings = {"features_s": extracted, "head_fit_s": time.time() - started - extracted,
               "feature_rows": len(gathered["fit"])}  # fmt: skip
    if cfg.erasing_rounds:
        timings |= _erasing(model, local, gathered, cfg, device, pos_weight)
    return timings, (scores, gathered["targets"])


def _erasing(model, local: dict, gathered: dict, cfg, device, pos_weight) -> dict:
    """Adversarial erasing rounds after the first head (extra heads join the model); their
    metrics, seconds per round among them."""
    first = erasing_rounds.HeadRows(gathered["fit"], gathered["fit_targets"],
                                    gathered["fit_images"])  # fmt: skip
    first_map, results = erasing_rounds.run_rounds(
        model, local["images"], local["targets"], first, pos_weight, cfg, device,
        gather=concat_across_workers,
    )  # fmt: skip
    return erasing_rounds.round_metrics(first_map, results)


def _report(model, cfg, classes, metrics: dict, rank: int) -> None:
    """ray.train.report with a checkpoint of rank 0's weights (all ranks must call it; the
    driver's Result.metrics are those of the last report that carried a checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        ckpt = None
        if rank == 0:
            checkpoint.save_model(model, cfg.model, folder, classes, extra={"metrics": metrics})
            ckpt = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=ckpt)


def _finish(model, cfg, classes, config, scored: tuple, run) -> dict:
    """mAP of every worker's un-augmented (scores, targets); rank 0 writes and logs the model."""
    out_uri = config["out_uri"]
    aps = per_class_ap(*scored, classes)
    final = {"map": _map(aps), "per_class_ap": aps, "model_uri": out_uri, "mlflow_run_id": None}
    if run:
        tracking.log_metrics(
            {"train_map": final["map"]} | {f"train_ap.{k}": v for k, v in aps.items()}
        )
        extra = {"train_ap": aps, "backbone_weights": config.get("weights"),
                 "finetune": cfg.finetune}  # fmt: skip
        model_file = checkpoint.save_model(model, cfg.model, out_uri, classes, extra)
        tracking.log_file(model_file, artifact_path="model")
        final["mlflow_run_id"] = run.info.run_id
        mlflow.end_run()
    return final


def _start_run(cfg, config: dict, weights: dict | None):
    run = tracking.start_run(
        cfg.tracking_uri, cfg.experiment, config.get("run_name"), tags=config.get("tags")
    )
    tracking.log_config(cfg)
    mlflow.log_params({k: config[k] for k in ("train_items", "skipped_items")})
    weights = weights or {"origin": "none (random init)", "sha256": ""}
    mlflow.log_params({"weights_origin": weights["origin"], "weights_sha256": weights["sha256"]})
    return run


def _train_epochs(model, cfg, classes, config, shard, device, rank, world, run) -> None:
    """The augmented training loop (finetune frozen / partial / full)."""
    per_worker = config["per_worker"]
    model = ray.train.torch.prepare_model(model)
    optimizer = _optimizer(checkpoint.unwrap(model), cfg)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
    batch_size = max(2, cfg.batch_size // world)
    steps = max(1, per_worker // batch_size)
    schedule = _warmup_cosine(cfg.warmup_epochs * steps, cfg.epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    pos_weight = config["pos_weight"].to(device)
    for epoch in range(cfg.epochs):
        start = time.time()
        batches = _batches(shard, batch_size, per_worker, device)
        loss, scores, targets = _train_epoch(
            model, optimizer, scheduler, batches, cfg, gen, pos_weight
        )
        aps = per_class_ap(concat_across_workers(scores), concat_across_workers(targets), classes)
        metrics = {"epoch": epoch, "loss": mean_across_workers(loss, len(scores)),
                   "train_running_map": _map(aps), "epoch_s": time.time() - start}  # fmt: skip
        if run:
            tracking.log_metrics(metrics, step=epoch)
        if rank == 0:
            log.info("classifier epoch %d/%d: loss %.4f, running mAP %.1f %%, %.0f s",
                     epoch + 1, cfg.epochs, metrics["loss"], 100 * metrics["train_running_map"],
                     metrics["epoch_s"])  # fmt: skip
        _report(model, cfg, classes, metrics, rank)
    return model


def train_loop(config: dict) -> None:
    """Ray Train worker entry point: every rank trains; rank 0 alone talks to MLflow."""
    cfg: ClassifierTrainConfig = config["cfg"]
    classes = config["classes"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)  # same initial weights on every worker
    device = ray.train.torch.get_device()
    model, weights = _build_model(cfg)
    config = {**config, "weights": weights}
    shard = ray.train.get_dataset_shard("train")
    run = _start_run(cfg, config, weights) if rank == 0 else None
    if cfg.finetune == "head":
        model = model.to(device)
        timings, scored = _fit_head(model, shard, cfg, device, config["pos_weight"])
        if run:
            tracking.log_metrics(timings)
        _report(model, cfg, classes, timings, rank)
    else:
        model = _train_epochs(model, cfg, classes, config, shard, device, rank, world, run)
        batches = _batches(shard, max(2, cfg.batch_size // world), 0, device)
        scored = tuple(concat_across_workers(a) for a in _evaluate(model, batches, cfg))
    final = _finish(model, cfg, classes, config, scored, run)
    _report(model, cfg, classes, final, rank)
