"""Batched training augmentation in torch: random resized crop, horizontal flip, colour jitter.

Works on whole batches on the training device: one affine grid per sample does crop, aspect jitter,
flip and resize in a single `grid_sample`, so augmentation costs little next to the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.classifier import normalize_float
from pipeline.train.config import AugmentConfig

IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def _uniform(
    n: int, low: float, high: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def crop_grids(
    batch: int, size: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Sampling grids (B, size, size, 2) for random resized crops with random flips."""
    area = _uniform(batch, *cfg.crop_scale, gen, device)
    log_ratio = _uniform(
        batch, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), gen, device
    )
    ratio = torch.exp(log_ratio)
    crop_w = (torch.sqrt(area * ratio)).clamp(max=1.0)  # crop width as a fraction of the image
    crop_h = (torch.sqrt(area / ratio)).clamp(max=1.0)
    centre_x = (torch.rand(batch, generator=gen, device=device) * 2 - 1) * (1 - crop_w)
    centre_y = (torch.rand(batch, generator=gen, device=device) * 2 - 1) * (1 - crop_h)
    flip = torch.where(torch.rand(batch, generator=gen, device=device) < cfg.flip, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w * flip, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, centre_y
    return F.affine_grid(theta, [batch, 3, size, size], align_corners=False)


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> jittered, clamped to [0, 1]."""
    n, device = x.shape[0], x.device

    def factor(amount: float) -> torch.Tensor:
        return _uniform(n, 1 - amount, 1 + amount, gen, device).view(n, 1, 1, 1)

    weights = torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)
    x = x * factor(cfg.brightness)
    grey = (x * weights).sum(dim=1, keepdim=True)
    x = grey.mean(dim=(2, 3), keepdim=True) + factor(cfg.contrast) * (
        x - grey.mean(dim=(2, 3), keepdim=True)
    )
    grey = (x * weights).sum(dim=1, keepdim=True)
    x = grey + factor(cfg.saturation) * (x - grey)
    drop = (torch.rand(n, generator=gen, device=device) < cfg.grayscale).view(n, 1, 1, 1)
    x = torch.where(drop, (x * weights).sum(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp_(0.0, 1.0)


def augment_batch(
    images: torch.Tensor, size: int, cfg: AugmentConfig, gen: torch.Generator, stats=IMAGENET
) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, size, size) float32, augmented and ImageNet-normalised.

    gen must live on images.device.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    grids = crop_grids(x.shape[0], size, cfg, gen, x.device)
    x = F.grid_sample(x, grids, mode="bilinear", padding_mode="reflection", align_corners=False)
    return normalize_float(colour_jitter(x, cfg, gen), stats)


def eval_batch(images: torch.Tensor, size: int, stats=IMAGENET) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, size, size) float32 normalised with stats (the
    backbone's (mean, std), 0-255 units), no augmentation."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return normalize_float(x, stats)
