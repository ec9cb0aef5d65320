"""SEC's three losses (Kolesnikov & Lampert, ECCV 2016, "Seed, Expand and Constrain") for the
segmenter. Pure torch and numpy, no Ray.

- seeding: cross-entropy on the pseudo-label's labelled pixels (they are the seeds; 255 is
  ignored); the caller computes it (models.deeplab.segmentation_loss, with its class terms).
- expansion: global weighted rank pooling (GWRP) of each class's softmax against the image's
  classes: -log GWRP for background (decay 0.999) and each present class (decay 0.996),
  -log(1 - max) for each absent class (GWRP with decay 0). The decays are SEC's
  (ExpandLossLayer, q_fg = 0.996, q_bg = 0.999), set for its 41 x 41 score maps.
- constrain-to-boundary: mean over pixels of KL(Q || P), Q the dense CRF of the prediction P
  on the image (no gradient through Q).

The expansion and constrain losses run on the softmax average-pooled by a stride (8 gives SEC's
scale: 28 x 28 for a 224 crop), which also keeps the CPU dense CRF affordable.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.refine.crf import CRFConfig, dense_crf
from pipeline.schema import BACKGROUND

PROB_FLOOR = 1e-5  # probabilities are clamped here before a log


def gwrp(scores: torch.Tensor, decay: torch.Tensor | float) -> torch.Tensor:
    """Global weighted rank pooling: each map's values sorted descending, weighted by
    decay ** rank and normalised by the weights' sum. decay 0 is the max, decay 1 the mean.

    scores (B, C, H, W) float; decay a float or (C,) or (B, C) float in [0, 1] -> (B, C).
    """
    ranked = scores.flatten(2).sort(dim=2, descending=True).values
    decay = torch.as_tensor(decay, dtype=scores.dtype, device=scores.device)
    ranks = torch.arange(ranked.shape[2], dtype=scores.dtype, device=scores.device)
    weights = decay[..., None] ** ranks  # 0 ** 0 is 1: decay 0 keeps only the top value
    return (ranked * weights).sum(dim=2) / weights.sum(dim=-1)


def expansion_loss(
    probs: torch.Tensor, present: torch.Tensor, fg_decay: float = 0.996, bg_decay: float = 0.999
) -> torch.Tensor:
    """SEC's expansion loss (a multi-label BCE of pooled scores), averaged over the batch.

    probs (B, C, H, W) float softmax; present (B, C) bool: the image's classes (background is
    always treated as present). Per image: -log GWRP(bg) + mean over present foreground classes
    of -log GWRP + mean over absent ones of -log(1 - max); an empty group adds 0.
    """
    fg_present = present[:, 1:]
    decay = torch.where(present, fg_decay, 0.0).to(probs.dtype)
    decay[:, BACKGROUND] = bg_decay
    pooled = gwrp(probs, decay).clamp(PROB_FLOOR, 1 - PROB_FLOOR)
    fg = pooled[:, 1:]
    present_term = -(torch.log(fg) * fg_present).sum(1) / fg_present.sum(1).clamp(min=1)
    absent_term = -(torch.log1p(-fg) * ~fg_present).sum(1) / (~fg_present).sum(1).clamp(min=1)
    return (present_term + absent_term - torch.log(pooled[:, BACKGROUND])).mean()


def constrain_loss(probs: torch.Tensor, crf_probs: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of KL(Q || P) = sum_c Q log(Q / P); 0 where the prediction already
    equals its CRF. probs P (B, C, H, W) float softmax (with gradient), crf_probs Q the same
    shape (a constant target)."""
    target = crf_probs.clamp(min=PROB_FLOOR)
    log_ratio = torch.log(target) - torch.log(probs.clamp(min=PROB_FLOOR))
    return (crf_probs * log_ratio).sum(dim=1).mean()


def pooled_probs(probs: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H // stride, W // stride) by area averaging (still sums to 1)."""
    return probs if stride == 1 else F.avg_pool2d(probs, stride)


def crf_images(x: torch.Tensor, stats, stride: int) -> np.ndarray:
    """The augmented batch back to RGB at the pooled size, for the CRF's appearance kernel.

    x (B, 3, H, W) float normalised with stats = (mean, std) in 0-255 units ->
    (B, H // stride, W // stride, 3) uint8 numpy.
    """
    mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    rgb = pooled_probs(x.detach() * std + mean, stride).clamp(0, 255).round()
    return rgb.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def crf_of_prediction(
    images: np.ndarray, probs: torch.Tensor, cfg: CRFConfig, scale: float
) -> torch.Tensor:
    """The dense CRF (pipeline.refine.crf) of each sample's prediction, without gradient.

    images (B, h, w, 3) uint8; probs (B, C, h, w) float softmax; scale: the working size
    relative to the size cfg's kernel widths are meant for (1 / stride). -> (B, C, h, w) float
    on probs' device.
    """
    scaled = replace(
        cfg, gaussian_sxy=cfg.gaussian_sxy * scale, bilateral_sxy=cfg.bilateral_sxy * scale
    )
    array = probs.detach().float().cpu().numpy()
    refined = np.stack([dense_crf(img, p, scaled) for img, p in zip(images, array, strict=True)])
    return torch.from_numpy(refined).to(device=probs.device, dtype=probs.dtype)


def sec_terms(
    logits: torch.Tensor,
    x: torch.Tensor,
    present: torch.Tensor,
    stats,
    stride: int = 8,
    fg_decay: float = 0.996,
    bg_decay: float = 0.999,
    crf: CRFConfig | None = None,
) -> dict[str, torch.Tensor]:
    """SEC's expansion and constrain losses of one batch ({"expand", "constrain"} scalars).

    logits (B, C, H, W) float; x (B, 3, H, W) float normalised with stats; present (B, C) bool.
    """
    probs = pooled_probs(torch.softmax(logits, dim=1), stride)
    images = crf_images(x, stats, stride)
    crf_probs = crf_of_prediction(images, probs, crf or CRFConfig(), 1.0 / stride)
    return {
        "expand": expansion_loss(probs, present, fg_decay, bg_decay),
        "constrain": constrain_loss(probs, crf_probs),
    }
