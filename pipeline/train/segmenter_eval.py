"""Held-out evaluation of the segmenter (a collection with gt/) and the preview grid artifact.

Ground truth is read only through pipeline.evaluate.inputs (list_gt, read_mask), the one package allowed to.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import cv2
import numpy as np
import torch

from pipeline import schema
from pipeline.collection import read_collection
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.evaluate.inputs import list_gt, read_mask
from pipeline.evaluate.metrics import ConfusionMatrix
from pipeline.models.inference import segment
from pipeline.report.images import PALETTE
from pipeline.storage import StorageError

log = logging.getLogger(__name__)


def _fit_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    scale = long_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def load_val_set(
    collection_uri: str, long_side: int, rank: int = 0, world: int = 1, max_items: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """This worker's share of (image, gt) pairs: image hxwx3 uint8 (long side <= long_side),
    gt HxW uint8 at source resolution, 255 = ignore. Unreadable items are skipped with a warning."""
    items = {item.id: item for item in read_collection(collection_uri).items if item.error is None}
    entries = [e for e in list_gt(collection_uri) if e[0] in items]
    if max_items:
        entries = entries[:: max(1, len(entries) // max_items)][:max_items]
    entries = entries[rank::world]
    videos: dict[str, dict[int, str]] = defaultdict(dict)
    pairs = []
    for item_id, frame, gt_uri in entries:
        if frame is not None:
            videos[item_id][frame] = gt_uri
            continue
        try:
            pairs.append(
                (_fit_long_side(read_image(items[item_id].uri), long_side), read_mask(gt_uri))
            )
        except (DecodeError, FileNotFoundError, StorageError) as error:
            log.warning("validation skips %s: %s", item_id, error)
    for item_id, gts in videos.items():
        try:
            decode = DecodeConfig(max_frames_per_video=max(gts) + 1)
            for index, frame in read_video_frames(items[item_id].uri, decode):
                if index in gts:
                    pairs.append((_fit_long_side(frame, long_side), read_mask(gts[index])))
        except (DecodeError, FileNotFoundError, StorageError) as error:
            log.warning("validation skips %s: %s", item_id, error)
    return pairs


def confusion(
    model: torch.nn.Module,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    long_side: int,
) -> np.ndarray:
    """Pixel confusion matrix (num_classes x num_classes int64, rows = gt) of the model on pairs."""
    cm = ConfusionMatrix(num_classes)
    for image, gt in pairs:
        gt = np.where(gt < num_classes, gt, schema.IGNORE).astype(np.uint8)
        cm.add(segment(model, image, long_side, out_shape=gt.shape), gt)
    return cm.mat


def miou(mat: np.ndarray) -> float:
    """Mean IoU in [0, 1] over classes present in gt or prediction (nan when nothing scored)."""
    cm = ConfusionMatrix(mat.shape[0])
    cm.mat = mat
    return cm.miou()


def preview_grid(
    images: list[np.ndarray], labels: list[np.ndarray], preds: list[np.ndarray]
) -> np.ndarray:
    """Rows of image | pseudo-label | prediction. images SxSx3 uint8, labels/preds SxS uint8 ->
    (rows * S) x (3 * S) x 3 uint8 RGB."""
    colours = PALETTE
    rows = [
        np.concatenate([img, colours[lab], colours[pred]], axis=1)
        for img, lab, pred in zip(images, labels, preds, strict=True)
    ]
    return np.concatenate(rows, axis=0)
