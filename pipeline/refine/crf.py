"""Fully connected CRF (Krähenbühl & Koltun 2011) on class probabilities, via pydensecrf."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pydensecrf.densecrf as dcrf


@dataclass(frozen=True)
class CRFConfig:
    iterations: int = 8  # mean-field steps; 5-10 is where the energy stops moving
    gaussian_sxy: float = 3.0  # smoothness kernel width in pixels (removes isolated pixels)
    gaussian_compat: float = 3.0  # smoothness kernel weight
    bilateral_sxy: float = 40.0  # appearance kernel width in pixels (at ~320 px working size)
    bilateral_srgb: float = 13.0  # appearance kernel colour bandwidth (0-255 RGB units)
    bilateral_compat: float = 8.0  # appearance kernel weight
    prob_floor: float = 1e-5  # probabilities are clipped here before -log (avoids inf unaries)
    scale: float = 1.0  # share of the size the CRF runs at (kernels scaled); 0.5: fast path

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"crf.scale must be in (0, 1], not {self.scale}")


def dense_crf(image: np.ndarray, probs: np.ndarray, cfg: CRFConfig) -> np.ndarray:
    """Refine per-pixel class probabilities with a dense CRF.

    image: HxWx3 uint8 RGB. probs: CxHxW float32, summing to 1 over C (C >= 1).
    Returns CxHxW float32 posteriors summing to 1 over C. No ignore value is produced here;
    callers turn low posteriors into 255 (ignore) themselves.
    """
    n_labels, height, width = probs.shape
    if image.shape[:2] != (height, width):
        raise ValueError(f"image {image.shape[:2]} and probs {probs.shape[1:]} differ in size")
    if n_labels == 1:
        return np.ones_like(probs, dtype=np.float32)
    h, w = max(1, round(height * cfg.scale)), max(1, round(width * cfg.scale))
    if (h, w) == (height, width):
        return _mean_field(image, probs, cfg, 1.0)
    small_image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    small_probs = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in probs])
    q = _mean_field(small_image, small_probs, cfg, w / width)
    up = np.stack([cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in q])
    return up / np.maximum(up.sum(axis=0, keepdims=True), 1e-12)


def _mean_field(image: np.ndarray, probs: np.ndarray, cfg: CRFConfig, scale: float) -> np.ndarray:
    """pydensecrf on CxHxW probs at their own size; spatial kernel widths multiplied by scale."""
    n_labels, height, width = probs.shape
    clipped = np.clip(probs.astype(np.float32), cfg.prob_floor, 1.0)
    unary = np.ascontiguousarray(-np.log(clipped).reshape(n_labels, -1))
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=max(cfg.gaussian_sxy * scale, 0.5), compat=cfg.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=cfg.bilateral_sxy * scale,
        srgb=cfg.bilateral_srgb,
        rgbim=np.ascontiguousarray(image.astype(np.uint8)),
        compat=cfg.bilateral_compat,
    )
    q = np.asarray(crf.inference(cfg.iterations), dtype=np.float32).reshape(n_labels, height, width)
    return q / np.maximum(q.sum(axis=0, keepdims=True), 1e-12)


def crf_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) an image is brought to for crf_mask: long side `side`, never enlarged."""
    factor = min(1.0, side / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def crf_mask(
    image: np.ndarray, logits: np.ndarray, classes: np.ndarray, cfg: CRFConfig, side: int
) -> np.ndarray:
    """A segmenter's logits refined by the dense CRF, as DeepLab v1/v2 post-process theirs.

    image: HxWx3 uint8 RGB. logits: KxhxW-or-any-size float32 over the K label indices in
    `classes` ((K,) uint8, e.g. background and an image's tags). The CRF runs with the image's
    long side at `side` px (the size its pixel widths are set for); the posteriors are upsampled
    bilinearly. Returns HxW uint8 label indices taken from `classes` (never 255).
    """
    height, width = image.shape[:2]
    small_h, small_w = crf_size(height, width, side)
    size = (small_w, small_h)
    small = (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != (width, height) else image
    )
    scores = np.stack([cv2.resize(c.astype(np.float32), size) for c in logits])
    scores = np.exp(scores - scores.max(axis=0, keepdims=True))
    post = dense_crf(small, scores / scores.sum(axis=0, keepdims=True), cfg)
    if size != (width, height):
        post = np.stack([cv2.resize(p, (width, height)) for p in post])
    return np.asarray(classes, np.uint8)[post.argmax(axis=0)]
