"""DSRG in the training loop (Huang et al., CVPR 2018): the segmenter's own predictions grow the
pseudo-label's seeds before each loss. Pure torch, no Ray.

An ignored pixel (255) joins class c when it touches (8-connected) a pixel already labelled c,
the prediction's most likely class among the allowed ones is c, and that probability is above
c's threshold (background 0.99, foreground 0.85 in the paper: speedinghzl/DSRG,
training/experiment/seed_mc/train-s.prototxt, `th1: 0.99, th2: 0.85`). Repeated until nothing
changes, which is DSRG's connected-component growth. Labelled pixels never change.
"""

from __future__ import annotations

import torch

from pipeline.schema import BACKGROUND, IGNORE

# The 8 neighbours as (row, column) shifts.
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def present_classes(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The classes each sample's label map holds, background always included.

    target (B, H, W) int64 with 255 = ignore -> (B, C) bool. The training batches carry no tags,
    so the (cropped) pseudo-label stands in for them: a tag whose object the crop does not show,
    or the labeller left entirely 255, is not among them.
    """
    valid = target != IGNORE
    flat = torch.where(valid, target, torch.zeros_like(target)).flatten(1)
    counts = torch.zeros(target.shape[0], num_classes, dtype=torch.int64, device=target.device)
    counts.scatter_add_(1, flat, valid.flatten(1).long())
    present = counts > 0
    present[:, BACKGROUND] = True
    return present


def candidate_classes(
    probs: torch.Tensor, allowed: torch.Tensor, fg_threshold: float, bg_threshold: float
) -> torch.Tensor:
    """The class each pixel may join: the most likely allowed class when its probability is above
    that class's threshold (bg_threshold for background, fg_threshold otherwise), else -1.

    probs (B, C, H, W) float softmax, allowed (B, C) bool -> (B, H, W) int64.
    """
    masked = probs.masked_fill(~allowed[:, :, None, None], -1.0)
    best, label = masked.max(dim=1)
    threshold = torch.where(label == BACKGROUND, bg_threshold, fg_threshold)
    return torch.where(best > threshold, label, torch.full_like(label, -1))


def _shifted(labels: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """labels (B, H, W) moved so out[y, x] = labels[y + dy, x + dx]; IGNORE outside the map."""
    padded = torch.nn.functional.pad(labels, (1, 1, 1, 1), value=IGNORE)
    height, width = labels.shape[1:]
    return padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]


def grow_seeds(
    target: torch.Tensor,
    probs: torch.Tensor,
    allowed: torch.Tensor,
    fg_threshold: float = 0.85,
    bg_threshold: float = 0.99,
    growable: torch.Tensor | None = None,
    max_steps: int | None = None,
) -> torch.Tensor:
    """Seeded region growing of a pseudo-label by a prediction.

    target (B, H, W) int64 class ids with 255 = ignore (the seeds); probs (B, C, H, W) float
    softmax (detached); allowed (B, C) bool: background and the image's classes (see
    present_classes); growable (B, H, W) bool or None (all): where growth may reach (e.g. not the
    crop's padding). Returns a new (B, H, W) int64: target with the grown pixels labelled, 255
    where still ignored. Each step adds the ignored pixels that qualify (see the module docstring)
    next to the current regions; it stops when a step adds nothing, or after max_steps.
    """
    grown = target.clone()
    joins = candidate_classes(probs, allowed, fg_threshold, bg_threshold)
    open_pixels = (grown == IGNORE) & (joins >= 0)
    if growable is not None:
        open_pixels &= growable
    steps = 0
    while max_steps is None or steps < max_steps:
        touching = torch.zeros_like(open_pixels)
        for dy, dx in NEIGHBOURS:
            touching |= _shifted(grown, dy, dx) == joins
        added = open_pixels & touching
        if not bool(added.any()):
            break
        grown = torch.where(added, joins, grown)
        open_pixels &= ~added
        steps += 1
    return grown


def padding_pixels(x: torch.Tensor, stats, tolerance: float = 1e-3) -> torch.Tensor:
    """Pixels of an augmented batch that are not image: the crop's zero padding (0 in every
    normalised channel) or the letterbox's black ((0 - mean) / std), within tolerance (bilinear
    resampling of a flat area rounds; one grey level is about 0.017). A truly black image pixel
    counts too, which only keeps growth out of it.

    x (B, 3, H, W) float normalised with stats = (mean, std) in 0-255 units -> (B, H, W) bool.
    """
    mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    black = (0.0 - mean / 255.0) / (std / 255.0)
    zero = (x.abs() < tolerance).all(dim=1)
    return zero | ((x - black).abs() < tolerance).all(dim=1)
