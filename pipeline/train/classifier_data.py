"""The classifier's training set: every usable item decoded once on the driver, squashed square.

Frames carry their video's tags; items with empty tags are negatives (all-zero targets).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline import schema
from pipeline.collection import Collection, Item
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.storage import StorageError
from pipeline.train.config import ClassifierTrainConfig


@dataclass
class TrainingSet:
    images: np.ndarray  # N x S x S x 3 uint8
    targets: np.ndarray  # N x C float32 multi-hot over foreground classes
    skipped: dict[str, str]  # item id -> reason it was left out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _decode_item(item: Item, size: int, cfg: ClassifierTrainConfig) -> list[np.ndarray]:
    if item.kind == schema.KIND_VIDEO:
        decode = DecodeConfig(
            frame_stride=cfg.video_frame_stride, max_frames_per_video=cfg.max_frames_per_video
        )
        return [_fit(frame, size) for _, frame in read_video_frames(item.uri, decode)]
    return [_fit(read_image(item.uri), size)]


def _try_decode(item: Item, size: int, cfg: ClassifierTrainConfig) -> list[np.ndarray] | str:
    if item.error:
        return item.error
    try:
        return _decode_item(item, size, cfg)
    except (DecodeError, FileNotFoundError, StorageError) as error:
        return str(error) or type(error).__name__


def store_size(cfg: ClassifierTrainConfig) -> int:
    """Side of the stored squares: the largest feature size for finetune=head, else the crop
    size times store_scale (room for random crops)."""
    if cfg.finetune == "head":
        return max(cfg.head_sizes)
    return round(cfg.image_size * cfg.store_scale)


def load_training_set(
    collection: Collection, cfg: ClassifierTrainConfig, threads: int = 4
) -> TrainingSet:
    """Decode every usable item (video frames sampled when cfg.video_frames; otherwise videos are
    left out) into squashed squares + multi-hot targets."""
    size = store_size(cfg)
    num_classes = len(collection.classes) - 1
    items = [i for i in collection.items if cfg.video_frames or i.kind != schema.KIND_VIDEO]
    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(lambda item: _try_decode(item, size, cfg), items))
    images, targets, skipped = [], [], {}
    for item, result in zip(items, decoded, strict=True):
        if isinstance(result, str) or not result:
            skipped[item.id] = result or "no frames"
            continue
        target = np.zeros(num_classes, np.float32)
        target[[t - 1 for t in item.tag_ids]] = 1.0
        images += result
        targets += [target] * len(result)
    if not images:
        raise ValueError(
            f"no usable training items in {collection.root} ({len(skipped)} skipped; a collection "
            "of videos only needs classifier.video_frames: true)"
        )
    return TrainingSet(np.stack(images), np.stack(targets), skipped)
