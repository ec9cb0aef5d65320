"""Segmentation metrics on uint8 masks: pair histograms, foreground J, the confusion matrix, tallies.

Masks are HxW class indices, 255 = ignore; pure numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.schema import BACKGROUND, IGNORE


def pair_histogram(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Counts of (gt value, pred value) pairs: pred, gt same-shape arrays of values in 0..255
    (class indices, 255 = ignore) -> (256, 256) int64, rows = gt, columns = pred."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    for name, array in (("pred", pred), ("gt", gt)):
        if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name} values must lie in 0..255")
    pairs = gt.astype(np.uint16) << 8 | pred.astype(np.uint16)
    return np.bincount(pairs.ravel(), minlength=65536).reshape(256, 256)


def histogram_foreground_iou(hist: np.ndarray) -> float:
    """Foreground J in [0, 1] from a pair_histogram: foreground = values 1..254, gt 255 excluded,
    predicted 255 counts as background; empty gt and empty prediction score 1.0."""
    union = hist[1:IGNORE].sum() + hist[BACKGROUND, 1:IGNORE].sum()
    return 1.0 if union == 0 else float(hist[1:IGNORE, 1:IGNORE].sum() / union)


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground J of one frame: pred, gt HxW uint8 class indices, 255 = ignore (see above)."""
    return histogram_foreground_iou(pair_histogram(pred, gt))


class ConfusionMatrix:
    """Pixel confusion matrix, rows = ground truth, columns = prediction (int64, CxC)."""

    def __init__(self, num_classes: int):
        if not 0 < num_classes <= IGNORE:
            raise ValueError(f"num_classes must be 1..{IGNORE}: {IGNORE} means ignore")
        self.num_classes = num_classes
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: same-shape integer arrays of class indices; gt == 255 (ignore) is skipped.

        pred must lie in [0, C) wherever gt is scored: map or mask predicted 255 before calling.
        """
        self.add_histogram(pair_histogram(pred, gt))

    def add_histogram(self, hist: np.ndarray) -> None:
        """Adds a (256, 256) pair_histogram; its row 255 (gt ignore) is skipped."""
        n = self.num_classes
        bad_gt = np.flatnonzero(hist[n:IGNORE].sum(1))
        if bad_gt.size:
            raise ValueError(f"gt value {n + bad_gt[0]} outside 0..{n - 1} and not {IGNORE}")
        bad_pred = np.flatnonzero(hist[:n, n:].sum(0))
        if bad_pred.size:
            raise ValueError(f"pred value {n + bad_pred[0]} outside 0..{n - 1} on scored pixels")
        self.mat += hist[:n, :n]

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1], float64 (C,); NaN for classes absent from both gt and pred."""
        tp = np.diag(self.mat).astype(np.float64)
        union = self.mat.sum(0) + self.mat.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU in [0, 1] over classes present in gt or pred (NaN when nothing was scored)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    def pixel_accuracy(self) -> float:
        total = self.mat.sum()
        return float(np.trace(self.mat) / total) if total else math.nan


@dataclass
class Tally:
    """Running totals of one group of scored items (all images, or all video frames)."""

    cm: ConfusionMatrix
    cm_confident: ConfusionMatrix
    items: int = 0
    scored_px: int = 0
    covered_px: int = 0

    def add(self, hist: np.ndarray, covered: bool) -> None:
        """hist: pair_histogram of one item; covered: False for failed/missing items."""
        confident = hist.copy()
        confident[:, IGNORE] = 0
        self.cm_confident.add_histogram(confident)
        confident[:, BACKGROUND] += hist[:, IGNORE]  # predicted 255 counted as background
        self.cm.add_histogram(confident)
        self.items += 1
        self.scored_px += int(hist[:IGNORE].sum())
        if covered:
            self.covered_px += int(hist[:IGNORE, :IGNORE].sum())

    def coverage(self) -> float:
        return self.covered_px / self.scored_px if self.scored_px else math.nan


@dataclass
class VideoTally:
    frame_j: list[float] = field(default_factory=list)
    relevant_j: list[float] = field(default_factory=list)
    missing: int = 0
