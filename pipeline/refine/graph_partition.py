"""Inter-image graph partitioning of a tag's regions (after Fan et al., ECCV 2018).

The regions one tag's pseudo-labels give it, in all the images of that tag, are the nodes of one
graph, weighted by the cosine similarity of their backbone features; edges join regions of
different images only. The object is what the tag's images have in common, so the graph is cut in
two (normalised cut: the sign of the Fiedler vector of the normalised Laplacian) and the part
whose nodes agree most with the other images is kept. Every image keeps its region that agrees
most with the other images, because an image found under a tag shows it; the other regions of the
dropped part become 255 (ignore). Pure numpy: no I/O, no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.schema import IGNORE


@dataclass(frozen=True)
class GraphPartitionConfig:
    min_images: int = 3  # fewer images of a tag: no graph (nothing in common to measure)
    min_region_share: float = 0.005  # connected regions under this share of the image are not nodes


def tag_regions(mask: np.ndarray, cls: int, min_share: float) -> list[np.ndarray]:
    """Connected (8-neighbour) regions of class `cls` in one label mask.

    mask: HxW uint8 class indices, 255 = ignore. Returns HxW bool arrays, one per region of at
    least min_share of the image's pixels, largest first.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask == cls).astype(np.uint8), connectivity=8
    )
    minimum = min_share * mask.size
    order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in order if stats[i, cv2.CC_STAT_AREA] >= minimum]


def region_descriptor(features: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Masked mean of a feature map over a region, L2-normalised.

    features: DxhxW float32 (any stride); region: HxW bool at image size. Returns (D,) float32.
    The region is resized to the feature map (area weights), so small regions still count.
    """
    _, h, w = features.shape
    weights = cv2.resize(region.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    if weights.sum() <= 0:
        weights = np.full((h, w), 1.0 / (h * w), dtype=np.float32)
    vector = (features * weights[None]).sum((1, 2)) / weights.sum()
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def partition(descriptors: np.ndarray, image_of: np.ndarray) -> np.ndarray:
    """Which of one tag's regions to keep.

    descriptors: (N, D) float32, L2-normalised; image_of: (N,) int, the image each region is in.
    Returns (N,) bool. Affinities are cosine similarities clipped at 0, between regions of
    different images only; the kept part of the two-way normalised cut is the one with the higher
    mean affinity to the other images, and each image's most agreeing region is always kept.
    """
    n = len(descriptors)
    if n == 0:
        return np.zeros(0, dtype=bool)
    other = image_of[:, None] != image_of[None, :]
    affinity = np.clip(descriptors @ descriptors.T, 0.0, None) * other
    degree = affinity.sum(1)
    agreement = degree / np.maximum(other.sum(1), 1)
    keep = np.zeros(n, dtype=bool)
    if n > 2 and (degree > 0).all():
        fiedler = _fiedler(affinity, degree)
        sides = [fiedler >= 0, fiedler < 0]
        if all(side.any() for side in sides):
            keep |= max(sides, key=lambda side: agreement[side].mean())
        else:
            keep[:] = True
    else:
        keep[:] = True
    for image in np.unique(image_of):
        members = np.flatnonzero(image_of == image)
        keep[members[np.argmax(agreement[members])]] = True
    return keep


def _fiedler(affinity: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """Second-smallest eigenvector of the normalised Laplacian, mapped back by D^-1/2 (Shi & Malik)."""
    inv_sqrt = 1.0 / np.sqrt(degree)
    laplacian = np.eye(len(degree)) - inv_sqrt[:, None] * affinity * inv_sqrt[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[:, 1] * inv_sqrt


def partition_tag(
    masks: list[np.ndarray], features: list[np.ndarray], cls: int, cfg: GraphPartitionConfig
) -> list[np.ndarray]:
    """One tag's graph over its images: the same masks with the dropped regions set to 255.

    masks: HxW uint8 label masks (255 = ignore) of the images tagged `cls`; features: DxhxW float32
    backbone feature maps of the same images. Masks are returned unchanged (copies) when fewer
    than cfg.min_images images are given.
    """
    out = [mask.copy() for mask in masks]
    if len(masks) < cfg.min_images:
        return out
    regions, image_of, descriptors = [], [], []
    for index, (mask, feature) in enumerate(zip(masks, features, strict=True)):
        for region in tag_regions(mask, cls, cfg.min_region_share):
            regions.append(region)
            image_of.append(index)
            descriptors.append(region_descriptor(feature, region))
    if not regions:
        return out
    keep = partition(np.stack(descriptors), np.asarray(image_of))
    for region, index, kept in zip(regions, image_of, keep, strict=True):
        if not kept:
            out[index][region] = IGNORE
    return out
