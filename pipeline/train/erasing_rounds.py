"""Adversarial erasing rounds of finetune=head (Wei et al., CVPR 2017; torch, no Ray, no I/O).

After the first head, each round computes the CAMs of every training image's tags with the
previous round's head, erases the strongest regions (pipeline.models.erasing), pools the frozen
backbone's features of the erased images again and fits a new head on them. Erasures accumulate:
a round erases what is left of the previous round's images. A round whose head no longer
classifies its erased images on held-out folds (`object_gone`) ends the rounds and is dropped.

The Ray Train loop runs this on each worker's images with `gather` joining the workers' feature
rows (every rank then fits the same head); benchmarks run it in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.erasing import erase, object_gone, resize_maps
from pipeline.train import finetune
from pipeline.train.config import ClassifierTrainConfig

log = logging.getLogger(__name__)
ERASE_CAMS = CamConfig(imagenet_prior=False)  # the pipeline's CAM inference, learned head alone


@dataclass(frozen=True)
class HeadRows:
    """Pooled feature rows a head is fitted on: every view (size x flip) of every image."""

    features: np.ndarray  # (R, D) float32
    targets: np.ndarray  # (R, C) float32 multi-hot
    images: np.ndarray  # (R,) int64: which image a row pools (the folds keep views together)


@dataclass(frozen=True)
class RoundResult:
    number: int  # 1 = the first erasing round
    weight: torch.Tensor  # (C, D) the head fitted on the erased images
    heldout_map: float  # two-fold mAP of heads fitted on the erased images
    loss: float  # class-balanced BCE of `weight` on the rows it was fitted on
    seconds: float  # erase + pool + fits
    kept: bool  # False: the object was gone, the head is dropped and the rounds end


def tag_lists(targets: np.ndarray) -> list[list[int]]:
    """(N, C) multi-hot over foreground classes -> per image its tag ids (1-based)."""
    return [[int(c) + 1 for c in np.flatnonzero(row)] for row in targets]


def single_head_model(model: CamClassifier, head: nn.Conv2d) -> CamClassifier:
    """A classifier on model's backbone (shared, not copied) with `head` as its only head."""
    twin = CamClassifier(model.cfg)
    twin.backbone, twin.classifier = model.backbone, head
    return twin.to(head.weight.device).eval()


def erase_images(
    model: CamClassifier,
    head: nn.Conv2d,
    images: np.ndarray,
    targets: np.ndarray,
    threshold: float,
    device,
) -> np.ndarray:
    """images (N, S, S, 3) uint8, targets (N, C) -> (N, S, S, 3) uint8: each image with the
    regions where `head`'s peak-normalised CAM of one of its tags exceeds threshold erased."""
    if not len(images):
        return images
    cams, _ = compute_cams(
        single_head_model(model, head), list(images), tag_lists(targets), ERASE_CAMS, str(device)
    )
    size = images.shape[1:3]
    return np.stack(
        [erase(im, resize_maps(c, size), threshold) for im, c in zip(images, cams, strict=True)]
    )


def pool_rows(
    backbone: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    cfg: ClassifierTrainConfig,
    device,
    stats,
) -> HeadRows:
    """images (N, S, S, 3) uint8 -> their pooled features at cfg.head_sizes x flip, as in the
    first round (finetune.pooled_features, in batches of cfg.batch_size)."""
    views = 2 * len(cfg.head_sizes)
    features, rows_targets, rows_images = [], [], []
    for start in range(0, len(images), cfg.batch_size):
        batch = torch.from_numpy(images[start : start + cfg.batch_size]).to(device)
        features.append(finetune.pooled_features(backbone, batch, cfg.head_sizes, stats).cpu())
        index = np.arange(start, start + len(batch))
        rows_targets.append(np.tile(targets[index], (views, 1)))
        rows_images.append(np.tile(index, views))
    if not features:
        width = getattr(backbone, "out_channels", 0)
        return HeadRows(np.zeros((0, width), np.float32), targets[:0], np.zeros(0, np.int64))
    return HeadRows(torch.cat(features).numpy(), np.concatenate(rows_targets).astype(np.float32),
                    np.concatenate(rows_images).astype(np.int64))  # fmt: skip


def fit_head(rows: HeadRows, pos_weight: torch.Tensor, cfg: ClassifierTrainConfig) -> torch.Tensor:
    """The (C, D) bias-free linear head on the rows (finetune.fit_linear_head, cfg's schedule)."""
    return finetune.fit_linear_head(
        torch.from_numpy(rows.features), torch.from_numpy(rows.targets),
        pos_weight.cpu(), cfg.head_steps, cfg.head_lr, cfg.weight_decay, cfg.seed,
    )  # fmt: skip


def head_loss(rows: HeadRows, weight: torch.Tensor, pos_weight: torch.Tensor) -> float:
    """Class-balanced BCE of a head on rows (the loss it was fitted to)."""
    logits = torch.from_numpy(rows.features) @ weight.T
    targets = torch.from_numpy(rows.targets)
    return float(F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight.cpu()))


def mean_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with a positive of average precision; scores, targets (N, C)."""
    aps = [finetune.average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float("nan")


def heldout_map(rows: HeadRows, pos_weight: torch.Tensor, cfg: ClassifierTrainConfig) -> float:
    """mAP of two-fold held-out scores: a head fitted on the even images scores the odd ones and
    the reverse. A linear head on frozen features memorises its training rows (dev training mAP
    0.99), so only held-out scores say whether the erased images can still be classified."""
    even = rows.images % 2 == 0
    scores = np.zeros_like(rows.targets)
    for fit_on in (even, ~even):
        if not fit_on.any() or fit_on.all():
            return float("nan")
        part = HeadRows(rows.features[fit_on], rows.targets[fit_on], rows.images[fit_on])
        weight = fit_head(part, pos_weight, cfg)
        scores[~fit_on] = torch.sigmoid(torch.from_numpy(rows.features[~fit_on]) @ weight.T)
    return mean_ap(scores, rows.targets)


def _gathered(rows: HeadRows, gather: Callable[[np.ndarray], np.ndarray]) -> HeadRows:
    return HeadRows(gather(rows.features), gather(rows.targets), gather(rows.images))


def run_rounds(
    model: CamClassifier,
    images: np.ndarray,
    targets: np.ndarray,
    first_rows: HeadRows,
    pos_weight: torch.Tensor,
    cfg: ClassifierTrainConfig,
    device,
    gather: Callable[[np.ndarray], np.ndarray] = lambda array: array,
) -> tuple[float, list[RoundResult]]:
    """Up to cfg.erasing_rounds rounds after model.classifier (the first head); each kept
    round's head is appended to model.extra_heads. images (N, S, S, 3) uint8 and targets (N, C)
    are this process's training images; first_rows the first head's (gathered) fit rows.
    Returns (held-out mAP of the first round, the rounds run, the dropped last one included)."""
    first_map = heldout_map(first_rows, pos_weight, cfg)
    log.info("adversarial erasing: held-out mAP %.3f before erasing", first_map)
    results, head = [], model.classifier
    for number in range(1, cfg.erasing_rounds + 1):
        started = time.time()
        images = erase_images(model, head, images, targets, cfg.erasing_threshold, device)
        stats = model.input_stats
        rows = _gathered(pool_rows(model.backbone, images, targets, cfg, device, stats), gather)
        weight = fit_head(rows, pos_weight, cfg)
        score = heldout_map(rows, pos_weight, cfg)
        kept = not object_gone(score, first_map, cfg.erasing_stop_ratio)
        result = RoundResult(number, weight, score, head_loss(rows, weight, pos_weight),
                             time.time() - started, kept)  # fmt: skip
        results.append(result)
        log.info("adversarial erasing round %d: held-out mAP %.3f, loss %.4f, %.0f s, %s",
                 number, score, result.loss, result.seconds,
                 "kept" if kept else "object gone: dropped, rounds end")  # fmt: skip
        if not kept:
            break
        head = add_head(model, weight)
    return first_map, results


def add_head(model: CamClassifier, weight: torch.Tensor) -> nn.Conv2d:
    """Append a head with weight (C, D) to model.extra_heads; returns it."""
    head = model.new_head()
    with torch.no_grad():
        head.weight.copy_(weight.view_as(head.weight))
    model.extra_heads.append(head)
    return head


def round_metrics(first_map: float, results: list[RoundResult]) -> dict[str, float]:
    """Flat MLflow metrics of the rounds: held-out mAP, loss and seconds per round."""
    metrics = {"erasing_round0_heldout_map": first_map,
               "erasing_rounds_kept": float(sum(r.kept for r in results))}  # fmt: skip
    for r in results:
        metrics |= {f"erasing_round{r.number}_heldout_map": r.heldout_map,
                    f"erasing_round{r.number}_loss": r.loss,
                    f"erasing_round{r.number}_s": r.seconds}  # fmt: skip
    return metrics
