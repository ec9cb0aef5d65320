"""A trained segmenter applied to a collection item: `predict_item` (one item -> masks written at
source resolution, its manifest rows), each image or frame through `predict_mask` (the
segmenter's logits, by default through the dense CRF).

Every image and every sampled video frame gets a mask (masks/<id>.png, masks/<id>/<frame:06d>.png).
`webseg predict` itself (preflight, label set, driver or Ray actors) is pipeline/predict_run.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from pipeline import schema, storage
from pipeline.collection import Item
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.labelset import item_manifest_row
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.inference import segment, segment_logits
from pipeline.output import encode_png
from pipeline.refine.crf import crf_mask, crf_size
from pipeline.settings import PredictConfig
from pipeline.storage import StorageError
from pipeline.train.class_weights import presence_shift

log = logging.getLogger(__name__)


def _frames(item: Item, decode: DecodeConfig) -> Iterator[tuple[int, np.ndarray]]:
    if item.kind == schema.KIND_VIDEO:
        yield from read_video_frames(item.uri, decode)
    else:
        yield schema.NO_FRAME, read_image(item.uri, decode)


def tag_fractions(mask: np.ndarray, item: Item) -> dict[str, float]:
    """{tag: share of the mask's pixels predicted as that tag} (mask HxW uint8)."""
    return {
        tag: round(float(np.mean(mask == tid)), 4)
        for tag, tid in zip(item.tags, item.tag_ids, strict=True)
    }


def tag_prior_shift(info: dict, cfg: PredictConfig) -> np.ndarray | None:
    """The (C,) presence prior shift for this checkpoint and config, or None (no restriction to
    tags, prior_shift none, or a checkpoint without label pixel counts: older than the shift)."""
    if cfg.restrict_to_tags is not True or cfg.prior_shift == "none":
        return None
    counts = info.get("label_pixels")
    if not counts:
        log.warning("predict.prior_shift %s: the model has no label pixel counts (trained before "
                    "the shift existed); predicting with raw logits", cfg.prior_shift)  # fmt: skip
        return None
    return presence_shift(np.asarray(counts["pixels"]), np.asarray(counts["image_pixels"]))


def predict_mask(
    model: DeepLabV3,
    image: np.ndarray,
    long_side: int,
    cfg: PredictConfig,
    allowed: tuple[int, ...] | None,
    shift: np.ndarray | None,
) -> np.ndarray:
    """image HxWx3 uint8 RGB -> HxW uint8 class indices (never 255): the segmenter's argmax, or
    with cfg.refine crf its logits (restricted to `allowed`) through the dense CRF."""
    if cfg.refine == "none":
        return segment(model, image, long_side, allowed=allowed, shift=shift)
    small = crf_size(*image.shape[:2], cfg.crf_side)
    logits = segment_logits(model, image, long_side, out_shape=small, shift=shift)
    classes = np.arange(logits.shape[0]) if allowed is None else np.asarray(allowed)
    picked = logits.index_select(0, torch.as_tensor(classes, device=logits.device))
    return crf_mask(image, picked.cpu().numpy(), classes, cfg.crf, cfg.crf_side)


def predict_item(
    model: DeepLabV3,
    item: Item,
    out_uri: str,
    long_side: int,
    cfg: PredictConfig,
    shift: np.ndarray | None = None,
) -> list[dict]:
    """Masks of one item written under out_uri; its manifest rows (a failed row on error).

    shift: (C,) logit shift (tag_prior_shift), applied to images restricted to their tags only:
    an image's tags say what it shows, a video's tags what it shows somewhere (web videos have
    intros and cut-aways), so a frame is not known to hold them."""
    if item.error:
        return [item_manifest_row(item, schema.FAILED, item.error, group=item.id)]
    allowed = (schema.BACKGROUND, *item.tag_ids) if cfg.restrict_to_tags is True else None
    if allowed is None or item.kind == schema.KIND_VIDEO:
        shift = None
    rows = []
    try:
        for frame, image in _frames(item, cfg.decode):
            mask = predict_mask(model, image, long_side, cfg, allowed, shift)
            relative = schema.mask_path(item.id, frame)
            storage.write_bytes(storage.join(out_uri, relative), encode_png(mask))
            rows.append(
                item_manifest_row(
                    item,
                    schema.LABELLED,
                    None,
                    group=item.id,
                    frame_index=None if frame == schema.NO_FRAME else frame,
                    mask_uri=relative,
                    scores=tag_fractions(mask, item),
                )
            )
    except (DecodeError, FileNotFoundError, StorageError) as error:
        reason = str(error) or type(error).__name__
        rows.append(item_manifest_row(item, schema.FAILED, reason, group=item.id))
    return rows
