"""Per-class loss weights from the training masks' pixel frequencies (numpy only; no torch, no Ray).

Median frequency balancing (Eigen & Fergus 2015, SegNet): freq_c is class c's pixels divided by the
non-ignore pixels of the masks where c occurs; weight_c = median(freq over present classes) /
freq_c, capped at max_weight. Rare classes (a few small objects) get weights above 1, the
background and frequent classes below 1, so a small label set does not learn only its big classes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline import schema

METHODS = ("median_frequency", "none")


def class_pixel_counts(
    masks: Iterable[np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, image_pixels), both (num_classes,) int64, over masks of HxW uint8 class ids.

    pixels[c]: pixels of class c; image_pixels[c]: non-ignore pixels of the masks containing c.
    255 (ignore) and any id >= num_classes are not counted.
    """
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for mask in masks:
        ids = mask[(mask != schema.IGNORE) & (mask < num_classes)]
        counts = np.bincount(ids.ravel(), minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += ids.size
    return pixels, image_pixels


def median_frequency_weights(
    pixels: np.ndarray, image_pixels: np.ndarray, max_weight: float
) -> np.ndarray:
    """(C,) float32 weights from class_pixel_counts; a class absent from every mask gets 1.0.

    weight_c = median(freq) / freq_c, freq_c = pixels[c] / image_pixels[c], capped at max_weight.
    """
    present = pixels > 0
    weights = np.ones(pixels.shape, np.float32)
    if not present.any():
        return weights
    freq = pixels[present] / image_pixels[present]
    weights[present] = np.minimum(np.median(freq) / freq, max_weight)
    return weights


def logit_offset(pixels: np.ndarray, tau: float) -> np.ndarray | None:
    """(C,) float32 tau * log(prior) from class_pixel_counts' pixels, or None when tau is 0 (no
    adjustment). A class with no pixels keeps offset 0: a very low prior would shield its logit
    from the loss, and then nothing would keep the segmenter from predicting a class it never
    saw; at 0 plain cross-entropy pushes it down everywhere."""
    if tau == 0:
        return None
    present = pixels > 0
    offset = np.zeros(pixels.shape, np.float32)
    offset[present] = tau * np.log(pixels[present] / pixels[present].sum())
    return offset


def presence_shift(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """(C,) float32 logit shift for predicting on an item whose classes are known to be present.

    From class_pixel_counts: a segmenter trained with cross-entropy learns the training prior
    p(c) = pixels[c] / total; on an item known to contain c (webseg predict --restrict-to-tags),
    the prior of c's pixels is p(c | c present) = pixels[c] / image_pixels[c]. Adding
    log p(c | present) - log p(c) = log(total / image_pixels[c]) to the logits moves the posterior
    from one prior to the other (Bayes; no knob). 0 for a class with no pixels.
    """
    shift = np.zeros(pixels.shape, np.float32)
    present = image_pixels > 0
    if present.any():
        shift[present] = np.log(pixels.sum() / image_pixels[present])
    return shift


def class_weights(
    masks: Iterable[np.ndarray], num_classes: int, method: str, max_weight: float
) -> np.ndarray | None:
    """(C,) float32 loss weights by `method` (see METHODS), or None for "none" (plain CE)."""
    if method == "none":
        return None
    if method != "median_frequency":
        raise ValueError(f"class_weighting must be one of {METHODS}, not {method!r}")
    return median_frequency_weights(*class_pixel_counts(masks, num_classes), max_weight)
