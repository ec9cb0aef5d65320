"""The classifier's training data as a Ray Data dataset: the driver lists item rows (id, uri, kind,
tag ids); Ray Data tasks decode each into squashed squares with a multi-hot target.

Frames carry their video's tags; items with empty tags are negatives (all-zero targets). An item
that cannot be decoded becomes one marker row (black image, the reason in `skip`) so that the
workers, which alone see the decoded stream, can leave it out and report it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import ray
from ray.data.expressions import col

from pipeline import schema
from pipeline.collection import Collection, Item
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.storage import StorageError
from pipeline.train.config import ClassifierTrainConfig

ITEMS_PER_BLOCK = 8  # items per decode task: enough tasks to stream, few enough to batch I/O


@dataclass
class TrainingSet:
    images: np.ndarray  # N x S x S x 3 uint8
    targets: np.ndarray  # N x C float32 multi-hot over foreground classes
    skipped: dict[str, str]  # item id -> reason it was left out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def store_size(cfg: ClassifierTrainConfig) -> int:
    """Side of the stored squares: the largest feature size for finetune=head, else the crop
    size times store_scale (room for random crops)."""
    if cfg.finetune == "head":
        return max(cfg.head_sizes)
    return round(cfg.image_size * cfg.store_scale)


def multi_hot(tag_ids, num_classes: int) -> np.ndarray:
    """Foreground tag ids (1-based, 0 is background) -> (num_classes,) float32 multi-hot."""
    target = np.zeros(num_classes, np.float32)
    target[[t - 1 for t in tag_ids]] = 1.0
    return target


def _item_row(item: Item, num_classes: int) -> dict:
    return {"item": item.id, "uri": item.uri, "kind": item.kind, "error": item.error or "",
            "tag_ids": list(item.tag_ids), "num_classes": num_classes}  # fmt: skip


def item_rows(collection: Collection, cfg: ClassifierTrainConfig) -> list[dict]:
    """The usable items (videos only with cfg.video_frames) as small rows, in a seeded order."""
    items = [i for i in collection.items if cfg.video_frames or i.kind != schema.KIND_VIDEO]
    order = np.random.default_rng(cfg.seed).permutation(len(items))
    return [_item_row(items[i], len(collection.classes) - 1) for i in order]


def _frames(row: dict, size: int, decode: DecodeConfig) -> list[np.ndarray]:
    if row["kind"] == schema.KIND_VIDEO:
        return [_fit(frame, size) for _, frame in read_video_frames(row["uri"], decode)]
    return [_fit(read_image(row["uri"]), size)]


def _try_frames(row: dict, size: int, decode: DecodeConfig) -> list[np.ndarray] | str:
    if row["error"]:
        return row["error"]
    try:
        return _frames(row, size, decode) or "no frames"
    except (DecodeError, FileNotFoundError, StorageError) as error:
        return str(error) or type(error).__name__


def decode_rows(row: dict, size: int, frame_stride: int, max_frames: int) -> list[dict]:
    """One item row -> training rows {"image": size x size x 3 uint8, "target", "item", "skip"}:
    one per image or sampled frame, skip ""; or a single marker row with the reason in skip."""
    decode = DecodeConfig(frame_stride=frame_stride, max_frames_per_video=max_frames)
    frames = _try_frames(row, size, decode)
    target = multi_hot(row["tag_ids"], row["num_classes"])
    if isinstance(frames, str):
        return [{"image": np.zeros((size, size, 3), np.uint8), "target": target,
                 "item": row["item"], "skip": frames}]  # fmt: skip
    return [{"image": f, "target": target, "item": row["item"], "skip": ""} for f in frames]


def _markers(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, str]]:
    skip = np.asarray(batch["skip"]).astype(str)
    keep = skip == ""
    return keep, {str(i): str(r) for i, r in zip(batch["item"][~keep], skip[~keep], strict=True)}


def usable(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """A numpy batch of decode_rows rows -> (images, targets) of the decoded ones, and
    {item id: reason} of the marker rows."""
    keep, skipped = _markers(batch)
    return batch["image"][keep], batch["target"][keep], skipped


@dataclass
class Census:
    rows: int  # decoded images and sampled frames
    positives: np.ndarray  # (C,) rows per foreground class
    skipped: dict[str, str]  # item id -> reason it was left out


def _summary(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A numpy batch of decode_rows rows -> one row: decoded rows, positives, skipped (JSON)."""
    keep, skipped = _markers(batch)
    return {"rows": np.array([keep.sum()]), "positives": batch["target"][keep].sum(axis=0)[None],
            "skipped": np.array([json.dumps(skipped)])}  # fmt: skip


def add_up(summaries, num_classes: int) -> Census:
    """Sum _summary batches (any iterable of them) into a Census, holding no per-item state
    beyond the skipped items."""
    census = Census(0, np.zeros(num_classes), {})
    for batch in summaries:
        census.rows += int(batch["rows"].sum())
        census.positives += batch["positives"].sum(axis=0)
        for text in batch["skipped"]:
            census.skipped.update(json.loads(str(text)))
    return census


def decoded_dataset(rows: list[dict], cfg: ClassifierTrainConfig) -> ray.data.Dataset:
    """Item rows -> a lazy Ray Data dataset of decode_rows rows, marker rows included (decoded in
    Ray Data tasks, again on every pass: nothing is materialised)."""
    blocks = max(1, min(len(rows), -(-len(rows) // ITEMS_PER_BLOCK)))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    kwargs = {"size": store_size(cfg), "frame_stride": cfg.video_frame_stride,
              "max_frames": cfg.max_frames_per_video}  # fmt: skip
    return dataset.flat_map(decode_rows, fn_kwargs=kwargs, num_cpus=cfg.data_cpus)


def count(decoded: ray.data.Dataset, num_classes: int) -> Census:
    """A pass over the decoded dataset in Ray Data tasks; only one summary row per batch reaches
    the caller."""
    summaries = decoded.map_batches(_summary, batch_format="numpy", batch_size=64)
    return add_up(summaries.iter_batches(batch_size=None, batch_format="numpy"), num_classes)


def training_dataset(decoded: ray.data.Dataset) -> ray.data.Dataset:
    """The rows the workers train on: decoded ones, {"image", "target"}."""
    return decoded.filter(expr=col("skip") == "").select_columns(["image", "target"])


def load_training_set(collection: Collection, cfg: ClassifierTrainConfig) -> TrainingSet:
    """Every usable item decoded here, in one process (tests and small collections; training
    streams the same rows through decoded_dataset instead)."""
    decoded = [r for row in item_rows(collection, cfg) for r in decode_rows(
        row, store_size(cfg), cfg.video_frame_stride, cfg.max_frames_per_video)]  # fmt: skip
    if not decoded:
        empty = np.zeros((0, store_size(cfg), store_size(cfg), 3), np.uint8)
        return TrainingSet(empty, np.zeros((0, len(collection.classes) - 1), np.float32), {})
    columns = {k: np.stack([r[k] for r in decoded]) for k in ("image", "target", "item", "skip")}
    return TrainingSet(*usable(columns))
