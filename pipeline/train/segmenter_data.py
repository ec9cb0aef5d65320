"""Segmenter training data: labelled rows of a pseudo-label set, streamed with Ray Data.

One Ray Data row per source (an image, or a video with its labelled frames, decoded once); each
becomes letterboxed (image, mask) pairs. Random scale / crop / flip runs batched on the training
device (`augment_pair`), seeded per worker.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline import schema, storage
from pipeline.collection import load_label_space
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.evaluate.inputs import read_mask
from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.classifier import normalize
from pipeline.output import read_table
from pipeline.storage import StorageError

log = logging.getLogger(__name__)
IMAGE_COL, MASK_COL = "image", "mask"
CONFIDENCE_COL = "confidence"  # per-row label confidence in [0, 1] (label sets from issue 15 on)


def filter_by_confidence(
    rows: list[dict[str, Any]], min_confidence: float, where: str = "label set"
) -> list[dict[str, Any]]:
    """The rows to train on: `labelled` rows whose confidence is below min_confidence are dropped.

    Rows without a confidence value (null) are kept; a table with no confidence column at all (a
    label set from before the column existed) is kept whole, with a warning. Other rows pass.
    """
    if min_confidence <= 0:
        return rows
    labelled = [r for r in rows if r.get(schema.STATUS) == schema.LABELLED]
    if not any(CONFIDENCE_COL in r for r in labelled):
        log.warning(
            "min_confidence %.3g: %s has no %r column; training on all %d labelled rows",
            min_confidence,
            where,
            CONFIDENCE_COL,
            len(labelled),
        )
        return rows

    def below(row: dict[str, Any]) -> bool:
        value = row.get(CONFIDENCE_COL)
        return (
            row.get(schema.STATUS) == schema.LABELLED
            and value is not None
            and float(value) < min_confidence
        )

    kept = [r for r in rows if not below(r)]
    log.info(
        "min_confidence %.3g: training on %d of %d labelled rows of %s",
        min_confidence,
        len(labelled) - (len(rows) - len(kept)),
        len(labelled),
        where,
    )
    return kept


def read_label_set(
    labels_uri: str, min_confidence: float = 0.0
) -> tuple[list[dict[str, Any]], tuple[str, ...], str]:
    """(sources, label space, collection root) of a pseudo-label set's `labelled` rows (those
    with confidence >= min_confidence, see filter_by_confidence).

    A source is {"uri": resolved media uri, "kind", "tags": JSON list of the item's tags, "frames":
    JSON list of frame indices (-1 for an image), "masks": JSON list of mask uris}; the collection
    root comes from LABELS/run.json.
    """
    run = json.loads(storage.read_text(storage.join(labels_uri, schema.RUN_NAME)))
    root = run.get("collection")
    if not root:
        raise ValueError(f"{labels_uri}/{schema.RUN_NAME} does not name its collection")
    rows = read_table(storage.join(labels_uri, schema.MANIFEST_NAME)).to_pylist()
    rows = filter_by_confidence(rows, min_confidence, labels_uri)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    frames, masks = defaultdict(list), defaultdict(list)
    for row in rows:
        if row[schema.STATUS] != schema.LABELLED or not row.get(schema.MASK_URI):
            continue
        key = (row[schema.ID], row[schema.URI])
        grouped.setdefault(
            key,
            {
                "uri": storage.resolve(root, row[schema.URI]),
                "kind": row[schema.KIND],
                "tags": json.dumps(sorted(row.get(schema.TAGS) or [])),
            },
        )
        frame = row.get(schema.FRAME_INDEX)
        frames[key].append(schema.NO_FRAME if frame is None else int(frame))
        masks[key].append(storage.resolve(labels_uri, row[schema.MASK_URI]))
    sources = [
        {**src, "frames": json.dumps(frames[k]), "masks": json.dumps(masks[k])}
        for k, src in grouped.items()
    ]
    return sources, load_label_space(root), root


def letterbox(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale so the long side is `size`, pad bottom/right to size x size.

    image HxWx3 uint8, mask HxW uint8 (255 = ignore) -> (size x size x 3, size x size); padding is
    black in the image and 255 (ignore) in the mask. A mask of another size is resized (nearest).
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out_image = np.zeros((size, size, 3), np.uint8)
    out_mask = np.full((size, size), schema.IGNORE, np.uint8)
    out_image[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    out_mask[:nh, :nw] = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return out_image, out_mask


def source_frames(source: dict[str, Any]) -> list[tuple[np.ndarray, str]]:
    """(RGB frame, mask uri) of a source: its image, or its video's labelled frames (one decode)."""
    indices, masks = json.loads(source["frames"]), json.loads(source["masks"])
    if source["kind"] != schema.KIND_VIDEO:
        return [(read_image(source["uri"]), masks[0])]
    wanted = dict(zip(indices, masks, strict=True))
    decode = DecodeConfig(max_frames_per_video=max(indices) + 1)
    return [
        (frame, wanted[i]) for i, frame in read_video_frames(source["uri"], decode) if i in wanted
    ]


def load_source(source: dict[str, Any], store_size: int) -> list[dict[str, np.ndarray]]:
    """Ray Data flat_map: source -> [{"image": SxSx3 uint8, "mask": SxS uint8}]; [] on failure."""
    try:
        pairs = source_frames(source)
        return [
            dict(zip((IMAGE_COL, MASK_COL), letterbox(img, read_mask(m), store_size), strict=True))
            for img, m in pairs
        ]
    except (DecodeError, FileNotFoundError, StorageError, ValueError) as error:
        log.warning("training skips %s: %s", source["uri"], error)
        return []


def count_samples(sources: list[dict[str, Any]]) -> int:
    return sum(len(json.loads(s["frames"])) for s in sources)


def augment_pair(
    images: torch.Tensor,
    masks: torch.Tensor,
    crop: int,
    scale_range: tuple[float, float],
    flip: float,
    gen: torch.Generator,
    stats=(IMAGENET_MEAN, IMAGENET_STD),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale, crop (padding where the crop leaves the image) and horizontal flip.

    images (B, S, S, 3) uint8, masks (B, S, S) uint8 -> (B, 3, crop, crop) float32 normalised,
    (B, crop, crop) int64 with 255 = ignore (also where the crop falls outside the image).
    gen lives on images.device.
    """
    batch, size, device = images.shape[0], images.shape[1], images.device
    low, high = math.log(scale_range[0]), math.log(scale_range[1])
    scale = torch.exp(torch.rand(batch, generator=gen, device=device) * (high - low) + low)
    extent = crop / (scale * size)  # crop extent as a fraction of the stored image
    centre = (torch.rand(batch, 2, generator=gen, device=device) * 2 - 1) * (1 - extent).abs()[
        :, None
    ]
    sign = torch.where(torch.rand(batch, generator=gen, device=device) < flip, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = extent * sign, extent
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, [batch, 3, crop, crop], align_corners=False)
    x = F.grid_sample(
        normalize(images, stats), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    shifted = (masks.float() + 1.0)[:, None]  # 0 marks "outside the image" after zero padding
    y = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[
        :, 0
    ]
    y = y.long() - 1
    return x, torch.where(y < 0, torch.full_like(y, schema.IGNORE), y)


CACHE_STORE_FRACTION = 0.25  # of the cluster's object store: room left for Ray Data and Train


def decoded_bytes(samples: int, store_size: int) -> int:
    """The decoded training set's size: samples x store_size^2 x (3 image + 1 mask) bytes."""
    return samples * store_size * store_size * 4


def should_cache(setting: bool | str, samples: int, store_size: int, resources: dict) -> bool:
    """cache_decoded resolved: True/False as given; "auto" when the decoded set fits
    CACHE_STORE_FRACTION of the cluster's object store (`ray.cluster_resources()`), never the
    driver's own memory (the driver may be a laptop in front of a cluster)."""
    if setting != "auto":
        return bool(setting)
    store = float(resources.get("object_store_memory", 0))
    return decoded_bytes(samples, store_size) <= CACHE_STORE_FRACTION * store


def training_masks(sources: list[dict[str, Any]]):
    """Every labelled mask of the sources (HxW uint8, 255 = ignore), read one at a time; an
    unreadable mask is skipped (load_source skips its item in training too)."""
    yield from read_masks(uri for source in sources for uri in json.loads(source["masks"]))


def read_masks(uris):
    """The masks at uris (HxW uint8, 255 = ignore), one at a time; unreadable ones skipped."""
    for uri in uris:
        try:
            yield read_mask(uri)
        except (FileNotFoundError, StorageError, ValueError) as error:
            log.warning("class pixel counts skip %s: %s", uri, error)
