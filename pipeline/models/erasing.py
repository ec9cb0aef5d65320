"""Adversarial erasing (Wei et al., CVPR 2017, AE-PSL): the pure parts (numpy/torch; no I/O).

Round 0 is the ordinary class head. Each later round erases, in every training image, the regions
where the previous round's maps of the image's tags are at their strongest, and fits a new head on
the erased images, which must then find the object in what is left. The rounds' maps are merged
as the union of the mined regions (pixelwise max), and the rounds stop once a head fitted on the
erased images no longer classifies them: the object is gone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.backbone import IMAGENET_MEAN

# AE-PSL erases the pixels in the top 20 % of a heatmap's values: above 0.8 of its peak
ERASE_THRESHOLD = 0.8
FILL_COLOUR = tuple(round(v) for v in IMAGENET_MEAN)  # RGB 0-255: what AE-PSL fills with


def erase_mask(cams: np.ndarray, threshold: float) -> np.ndarray:
    """cams (K, H, W) float in [0, 1], peak-normalised -> (H, W) bool: pixels where any map
    exceeds threshold. No maps (K = 0): nothing is erased."""
    if cams.ndim != 3:
        raise ValueError(f"expected K x H x W maps, got shape {cams.shape}")
    return (cams > threshold).any(axis=0)


def erase(
    image: np.ndarray,
    cams: np.ndarray,
    threshold: float = ERASE_THRESHOLD,
    fill: tuple[int, int, int] = FILL_COLOUR,
) -> np.ndarray:
    """image (H, W, 3) uint8, cams (K, H, W) float in [0, 1] at the image's size -> a copy of
    the image, (H, W, 3) uint8, with the pixels above threshold in any map set to fill."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    if cams.shape[1:] != image.shape[:2]:
        raise ValueError(f"maps {cams.shape[1:]} and image {image.shape[:2]} differ in size")
    out = image.copy()
    out[erase_mask(cams, threshold)] = np.asarray(fill, dtype=np.uint8)
    return out


def resize_maps(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) float maps -> (K, H, W) float32, bilinear, for size = (H, W)."""
    if len(cams) == 0:
        return np.zeros((0, *size), np.float32)
    if cams.shape[1:] == tuple(size):
        return cams.astype(np.float32)
    maps = torch.from_numpy(np.ascontiguousarray(cams, dtype=np.float32))[None]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0].numpy()


def merge_round_maps(rounds: list[np.ndarray]) -> np.ndarray:
    """The union of the regions the rounds mined: rounds is a list of (K, h, w) float maps of
    the same tags, each peak-normalised -> (K, h, w) float32, their pixelwise max."""
    if not rounds:
        raise ValueError("no round maps to merge")
    shapes = {r.shape for r in rounds}
    if len(shapes) != 1:
        raise ValueError(f"round maps differ in shape: {sorted(shapes)}")
    return np.maximum.reduce([r.astype(np.float32) for r in rounds])


def object_gone(round_map: float, first_map: float, min_ratio: float) -> bool:
    """The stopping rule: a head fitted on the erased images classifies them with held-out mAP
    round_map, the first round's head its own images with first_map; the object is gone (and
    the round's head is dropped) when round_map < min_ratio * first_map. A nan mAP (no class with
    a positive in both folds) counts as gone."""
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if np.isnan(round_map) or np.isnan(first_map):
        return True
    return round_map < min_ratio * first_map
