"""The segmenter's Ray Train worker loop (see pipeline/train/segmenter.py for the driver side).

Every worker trains on its Ray Data shard; rank 0 alone talks to MLflow and writes the final model.
A checkpoint (pipeline.checkpoint format plus optimizer, scaler, epoch, step and MLflow run id) is
reported every epoch; `ray.train.get_checkpoint()` resumes from the latest one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import nullcontext

import mlflow
import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from pipeline import checkpoint, storage
from pipeline.config import to_dict
from pipeline.models.classifier import input_stats
from pipeline.models.deeplab import DeepLabV3, poly_lr_factor
from pipeline.models.inference import segment
from pipeline.tracking import runs as tracking
from pipeline.tracking.registry import log_segmenter
from pipeline.train.common import sum_across_workers
from pipeline.train.config import backbone_lr_mult, starts_pretrained
from pipeline.train.curriculum import dataset_for_epoch, steps_per_epoch, total_steps
from pipeline.train.finetune import freeze, set_train_mode
from pipeline.train.segmenter_data import IMAGE_COL, MASK_COL, augment_pair
from pipeline.train.segmenter_eval import confusion, load_val_set, miou, preview_grid
from pipeline.train.segmenter_init import init_backbone
from pipeline.train.segmenter_objective import training_loss

log = logging.getLogger(__name__)


def _build(cfg, restored: dict | None) -> tuple[DeepLabV3, torch.optim.Optimizer, dict | None]:
    """(model, optimizer, backbone weights info {"origin", "sha256"} or None for scratch)."""
    torch.manual_seed(cfg.seed)  # same initial weights on every worker
    model = DeepLabV3(cfg.model)
    if restored is not None:
        model.load_state_dict(restored["state_dict"])
        weights = restored.get("backbone_weights")
    else:
        info = init_backbone(model, cfg.init_from, cfg.pretrained)
        weights = info.as_dict() if info is not None else None
        log.info("segmenter backbone %s from %s", cfg.model.backbone, weights or "scratch")
    freeze(model.backbone, cfg.finetune, cfg.trainable_stages)
    backbone, head = model.param_groups()
    groups = [
        {"params": backbone, "lr": cfg.lr * backbone_lr_mult(cfg)},
        {"params": head, "lr": cfg.lr},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    if restored is not None:
        optimizer.load_state_dict(restored["optimizer"])
    return model, optimizer, weights


def _train_mode(model, cfg) -> None:
    """Train mode; a pretrained backbone's BatchNorm statistics stay fixed when freeze_bn."""
    net = getattr(model, "module", model)
    set_train_mode(model, net.backbone, cfg.freeze_bn and starts_pretrained(cfg))


def _restore() -> dict | None:
    found = ray.train.get_checkpoint()
    if found is None:
        return None
    with found.as_directory() as folder:
        return checkpoint.load_payload(folder)


def _train_epoch(
    model, optimizer, scaler, batches, cfg, gen, schedule: dict, terms: dict
) -> tuple[float, int, dict[str, float]]:
    """One pass over this worker's shard; returns (mean loss, samples seen, mean loss parts of
    segmenter_objective.training_loss). terms: the cross-entropy's per-class tensors on the
    device, {"weight": (C,) or None, "logit_offset": (C,) or None}, or None for neither."""
    _train_mode(model, cfg)
    stats = input_stats(getattr(model, "module", model).backbone)
    device_type = "cuda" if scaler.is_enabled() else "cpu"
    losses, seen, parts = [], 0, []
    for batch in batches:
        factor = poly_lr_factor(schedule["step"], schedule["total"], cfg.poly_power)
        for group, base in zip(optimizer.param_groups, schedule["base_lrs"], strict=True):
            group["lr"] = base * factor
        x, y = augment_pair(
            batch[IMAGE_COL],
            batch[MASK_COL],
            cfg.crop_size,
            cfg.scale_range,
            cfg.flip,
            gen,
            stats=stats,
        )
        autocast = (
            torch.autocast(device_type, dtype=torch.float16)
            if scaler.is_enabled()
            else nullcontext()
        )
        with autocast:
            logits = model(x).float()
        loss, batch_parts = training_loss(logits, x, y, cfg, terms, stats)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule["step"] += 1
        losses.append(loss.item())
        parts.append(batch_parts)
        seen += x.shape[0]
    means = {f"train_{k}": float(np.mean([p[k] for p in parts])) for k in (parts or [{}])[0]}
    return (float(np.mean(losses)) if losses else float("nan")), seen, means


def _report(model, optimizer, scaler, cfg, classes, metrics: dict, state: dict, rank: int) -> None:
    """ray.train.report with rank 0's full training state (every rank must call it)."""
    with tempfile.TemporaryDirectory() as folder:
        found = None
        if rank == 0:
            extra = {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "metrics": metrics,
                "eval_long_side": cfg.eval_long_side,
                **state,
            }
            checkpoint.save_model(model, cfg.model, folder, classes, extra=extra)
            found = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=found)


def _validate(model, pairs, cfg) -> np.ndarray | None:
    if not cfg.val_collection:
        return None
    net = getattr(model, "module", model).eval()
    return sum_across_workers(confusion(net, pairs, cfg.model.num_classes, cfg.eval_long_side))


def _epoch_metrics(epoch, loss, seen, seconds, optimizer, mat) -> dict:
    counts = sum_across_workers(np.array([loss * seen, seen], np.float64))
    metrics = {
        "epoch": epoch,
        "loss": float(counts[0] / max(counts[1], 1)),
        "lr": optimizer.param_groups[-1]["lr"],
        "epoch_s": seconds,
        "samples_per_s": float(counts[1] / max(seconds, 1e-9)),
    }
    if mat is not None:
        metrics["val_miou"] = miou(mat)
    return metrics


def _val_text(metrics: dict) -> str:
    return f", val mIoU {100 * metrics['val_miou']:.1f} %" if "val_miou" in metrics else ""


def _finish(model, cfg, classes, config: dict, mat) -> dict:
    """Rank 0: final model to out_uri, artifacts and the registered model (active MLflow run)."""
    net = getattr(model, "module", model).eval()
    extra = {
        "eval_long_side": cfg.eval_long_side,
        "labels_uri": config["labels_uri"],
        "backbone_weights": config.get("backbone_weights"),
        "label_pixels": config.get("label_pixels"),  # predict's presence prior shift
    }
    model_uri = checkpoint.save_model(net, cfg.model, config["out_uri"], classes, extra=extra)
    mlflow.log_dict(to_dict(cfg), "config.json")
    if mat is not None:
        mlflow.log_dict(
            {"classes": classes, "rows_gt_columns_pred": mat.tolist()}, "confusion_matrix.json"
        )
    previews = config["previews"]
    if previews:
        preds = [segment(net, p["image"], cfg.store_size) for p in previews]
        mlflow.log_image(
            preview_grid([p["image"] for p in previews], [p["mask"] for p in previews], preds),
            "preview_image_pseudolabel_prediction.png",
        )
    with tempfile.TemporaryDirectory() as folder:
        local = checkpoint.save_model(net, cfg.model, folder, classes, extra=extra)
        registered = log_segmenter(local, cfg.registered_model_name)
    mlflow.set_tag("webseg.registered_model_uri", f"models:/{cfg.registered_model_name}/"
                   f"{registered['version']}")  # fmt: skip
    return {
        "model_uri": model_uri,
        "registered_model_uri": registered["model_uri"],
        "version": registered["version"],
    }


def _setup(cfg, world: int, samples: int, device, simple: dict) -> tuple:
    """(DDP-prepared model, optimizer, scaler, schedule state, first epoch, backbone weights
    info); restored on resume. simple: the curriculum's {"epochs", "samples"} (0 epochs: none)."""
    restored = _restore()
    model, optimizer, weights = _build(cfg, restored)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    if restored is not None and restored.get("scaler"):
        scaler.load_state_dict(restored["scaler"])
    steps = steps_per_epoch(samples, world, cfg.batch_size)
    simple_steps = steps_per_epoch(simple["samples"], world, cfg.batch_size)
    schedule = {
        "step": int(restored["step"]) if restored else 0,
        "total": total_steps(simple_steps, steps, simple["epochs"], cfg.epochs),
        "base_lrs": [cfg.lr * backbone_lr_mult(cfg), cfg.lr],
    }
    start_epoch = int(restored["epoch"]) + 1 if restored else 0
    prepared = ray.train.torch.prepare_model(model)
    return prepared, optimizer, scaler, schedule, start_epoch, weights


def _start_mlflow(cfg, config: dict, world: int, fresh: bool) -> None:
    """Rank 0: continue the run the driver created; params only on a fresh start."""
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.start_run(run_id=config["run_id"])
    if fresh:
        tracking.log_config(cfg)
        weights = config.get("backbone_weights") or {}
        extra = {
            "labels_uri": config["labels_uri"],
            "train_samples": config["samples"],
            "weights_origin": weights.get("origin", "none"),
            "weights_sha256": weights.get("sha256", "none"),
            "backbone_lr_mult_effective": backbone_lr_mult(cfg),
        }
        simple = config.get("simple") or {}
        if simple.get("epochs"):
            extra.update(simple_epochs_effective=simple["epochs"], simple_samples=simple["samples"])
        mlflow.log_params({**extra, "workers": world})
        if config.get("class_weights") is not None:
            mlflow.log_dict(
                {
                    "method": cfg.class_weighting,
                    "max_class_weight": cfg.max_class_weight,
                    "weights": dict(zip(config["classes"], config["class_weights"], strict=True)),
                },
                "class_weights.json",
            )
        if config.get("logit_offset") is not None:
            mlflow.log_dict(
                {
                    "tau": cfg.logit_adjustment,
                    "logit_offset": dict(
                        zip(config["classes"], config["logit_offset"], strict=True)
                    ),
                },
                "logit_adjustment.json",
            )


def _class_terms(config: dict, device) -> dict:
    """The driver's class weights and logit offsets (lists or None) as tensors on the device."""

    def tensor(values):
        return None if values is None else torch.tensor(values, dtype=torch.float32, device=device)

    return {
        "weight": tensor(config.get("class_weights")),
        "logit_offset": tensor(config.get("logit_offset")),
    }


def _batches(shard, batch_size: int, device, seed: int):
    return shard.iter_torch_batches(
        batch_size=batch_size,
        dtypes={IMAGE_COL: torch.uint8, MASK_COL: torch.uint8},
        device=device,
        local_shuffle_buffer_size=4 * batch_size,
        local_shuffle_seed=seed,
        drop_last=True,
    )


def train_loop(config: dict) -> None:
    """Ray Train worker entry point; config from segmenter.build_trainer."""
    cfg, classes = config["cfg"], config["classes"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, context.get_local_world_size())))
    device = ray.train.torch.get_device()
    simple = config.get("simple") or {"epochs": 0, "samples": 0}
    model, optimizer, scaler, schedule, start, weights = _setup(
        cfg, world, config["samples"], device, simple
    )
    config = {**config, "backbone_weights": weights}
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 7919 * start)
    pairs = []
    if cfg.val_collection:
        pairs = load_val_set(cfg.val_collection, cfg.eval_long_side, rank, world, cfg.val_max_items)
    terms = _class_terms(config, device)
    shards = {"train": ray.train.get_dataset_shard("train")}
    if simple["epochs"]:
        shards["simple"] = ray.train.get_dataset_shard("simple")
    if rank == 0:
        _start_mlflow(cfg, config, world, fresh=start == 0)
    mat, metrics = None, {}
    for epoch in range(start, cfg.epochs):
        started = time.time()
        shard = shards[dataset_for_epoch(epoch, simple["epochs"])]
        batches = _batches(shard, max(2, cfg.batch_size // world), device, cfg.seed + epoch)
        loss, seen, parts = _train_epoch(
            model, optimizer, scaler, batches, cfg, gen, schedule, terms
        )
        seconds = time.time() - started
        mat = _validate(model, pairs, cfg)
        metrics = {**_epoch_metrics(epoch, loss, seen, seconds, optimizer, mat), **parts}
        if rank == 0:
            tracking.log_metrics(metrics, step=epoch)
            log.info("segmenter epoch %d/%d: loss %.4f, %.0f s%s", epoch + 1, cfg.epochs, loss,
                     seconds, _val_text(metrics))  # fmt: skip
        state = {
            "epoch": epoch,
            "step": schedule["step"],
            "mlflow_run_id": config["run_id"],
            "backbone_weights": weights,
        }
        _report(model, optimizer, scaler, cfg, classes, metrics, state, rank)
    if mat is None and cfg.val_collection:
        mat = _validate(model, pairs, cfg)
    final = {
        "epochs": cfg.epochs,
        "mlflow_run_id": config["run_id"],
        "samples_per_s": metrics.get("samples_per_s"),
        "val_miou": miou(mat) if mat is not None else None,
        "backbone_weights": weights,
    }
    if rank == 0:  # Result.metrics only holds checkpointed reports: the summary goes to a file
        final.update(_finish(model, cfg, classes, config, mat))
        mlflow.end_run()
        storage.write_text(config["result_uri"], json.dumps(final, default=str))
