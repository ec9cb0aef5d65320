"""How much of a pretrained classifier trains: initial weights, freezing, class-balanced losses,
and the fast path that fits the class head alone on pooled features (torch only; no Ray, no I/O
beyond reading the weights file).

On small collections the ImageNet backbone must stay frozen (fine-tuning all of it on 228 dev
images drove the rare classes' maps to zero); `finetune` picks how much trains:
head (frozen backbone, head fitted on cached pooled features: seconds), frozen (same, but through
the augmented training loop), partial (the last `trainable_stages` stages), full.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.checkpoint import load_user_backbone
from pipeline.models.pretrained import WeightsInfo, load_backbone_weights
from pipeline.train.augment import eval_batch
from pipeline.train.config import FINETUNE_MODES


def initial_weights(backbone: nn.Module, name: str, pretrained: str) -> WeightsInfo | None:
    """Load the backbone's starting weights in place: "imagenet" = the installed package's
    ImageNet weights, "none" = random init (returns None), anything else a weights file URI."""
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        return load_backbone_weights(backbone, name)
    return load_user_backbone(backbone, pretrained)


def stages_of(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's stages from input to output (each backbone defines stages())."""
    return list(backbone.stages())


def freeze(backbone: nn.Module, mode: str, trainable_stages: int) -> None:
    """requires_grad per finetune mode: nothing in the backbone trains for head/frozen, the last
    trainable_stages stages for partial, everything for full."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"unknown finetune mode {mode!r}; expected one of {FINETUNE_MODES}")
    stages = stages_of(backbone)
    first_trainable = {"head": len(stages), "frozen": len(stages), "full": 0}.get(
        mode, max(0, len(stages) - trainable_stages)
    )
    for index, stage in enumerate(stages):
        for parameter in stage.parameters():
            parameter.requires_grad_(index >= first_trainable)


def set_train_mode(model: nn.Module, backbone: nn.Module, freeze_bn: bool) -> None:
    """model.train(), with the backbone's BatchNorm statistics kept fixed when freeze_bn (small
    batches of a small collection would overwrite the ImageNet statistics with noise)."""
    model.train()
    if freeze_bn:
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def positive_weights(targets: torch.Tensor, max_weight: float) -> torch.Tensor:
    """(N, C) multi-hot -> (C,) BCE pos_weight = negatives / positives, clipped to
    [1, max_weight]: rare classes count as much as common ones."""
    return balanced_weights(targets.sum(dim=0), targets.shape[0], max_weight)


def balanced_weights(positives: torch.Tensor, rows: int, max_weight: float) -> torch.Tensor:
    """positive_weights from counts: (C,) positives per class among `rows` rows -> (C,)."""
    negatives = rows - positives
    return (negatives / positives.clamp_min(1.0)).clamp(1.0, max_weight)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: scores (N,) float, labels (N,) {0, 1}; nan when there is no positive."""
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / positives)


def fit_linear_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor,
    steps: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> torch.Tensor:
    """Bias-free linear classifier on pooled features, full-batch Adam with class-balanced BCE.

    features (N, D) float32, targets (N, C) {0, 1} -> weight (C, D) float32. A 1x1 conv with
    this weight on the feature map gives the CAMs, and their mean gives these logits (GAP)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(targets.shape[1], features.shape[1], generator=generator) * 0.01
    weight = weight.to(features.device).requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(
            features @ weight.T, targets, pos_weight=pos_weight
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return weight.detach()


@torch.inference_mode()
def pooled_features(
    backbone: nn.Module, images: torch.Tensor, sizes: tuple[int, ...], stats
) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B * 2 * len(sizes), D) globally pooled backbone features of each
    image at each square size and its horizontal flip (order: size, then flip, then image)."""
    out = []
    for size in sizes:
        x = eval_batch(images, size, stats)
        for view in (x, x.flip(-1)):
            out.append(backbone(view).mean(dim=(2, 3)))
    return torch.cat(out)


@torch.inference_mode()
def pooled(backbone: nn.Module, images: torch.Tensor, size: int, stats) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, D) globally pooled backbone features at one square size: with a
    bias-free head W on GAP, the classifier's logits are these @ W.T."""
    return backbone(eval_batch(images, size, stats)).mean(dim=(2, 3))
