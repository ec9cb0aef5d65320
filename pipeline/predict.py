"""Segment a collection with a trained segmenter into a label set in the pseudo-label format.

    webseg predict --model models:/webseg-segmenter@candidate --collection URI --out LABELS_URI

Items are spread over a Ray actor pool (GPU where the cluster has one; `predict.resources`, see
predict_dataflow.py), or run on the driver without Ray with `resources.actors: 0` (small holdouts,
tests). Every image and every sampled video frame gets a mask at source resolution
(masks/<id>.png, masks/<id>/<frame:06d>.png), plus manifest.parquet and run.json, so
`webseg evaluate` scores the output like pseudo-labels.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline import schema, storage
from pipeline.collection import Item
from pipeline.config import flatten
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.label_config import AUTO, StageResources
from pipeline.models.classifier import input_stats, normalize
from pipeline.models.deeplab import DeepLabV3
from pipeline.output import encode_png, status_counts, write_manifest, write_run_json
from pipeline.progress import progress_bar
from pipeline.rows import dumps
from pipeline.storage import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    long_side: int = 0  # working resolution (long side, px); 0 = the one the model was trained with
    restrict_to_tags: bool = False  # only background and the item's tags may be predicted
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # frame sampling and size limits
    resources: StageResources = field(  # actor pool; actors 0 = sequentially on the driver, no Ray
        default_factory=lambda: StageResources(actors=AUTO, num_gpus=AUTO, batch_size=1)
    )
    tracking_uri: str | None = None  # MLflow store of models:/ URIs; None: MLFLOW_TRACKING_URI,
    # else mlflow.db beside the --out label set (pipeline/tracking.py)


@torch.inference_mode()
def segment(
    model: torch.nn.Module,
    image: np.ndarray,
    long_side: int,
    out_shape: tuple[int, int] | None = None,
    allowed: Sequence[int] | None = None,
) -> np.ndarray:
    """image HxWx3 uint8 RGB -> class indices out_shape (default HxW) uint8 (never 255).

    The image is resized to long_side, logits are upsampled bilinearly to out_shape; `allowed`
    restricts the argmax to those class indices. The model must be in eval mode.
    """
    height, width = image.shape[:2]
    out_shape = out_shape or (height, width)
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interp) if size != (width, height) else image
    device = next(model.parameters()).device
    x = normalize(
        torch.from_numpy(np.ascontiguousarray(resized))[None].to(device),
        input_stats(getattr(model, "backbone", model)),
    )
    logits = F.interpolate(model(x).float(), size=out_shape, mode="bilinear", align_corners=False)[
        0
    ]
    if allowed is not None:
        blocked = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        blocked[list(allowed)] = False
        logits[blocked] = -torch.inf
    return logits.argmax(0).to(torch.uint8).cpu().numpy()


def _frames(item: Item, decode: DecodeConfig) -> Iterator[tuple[int, np.ndarray]]:
    if item.kind == schema.KIND_VIDEO:
        yield from read_video_frames(item.uri, decode)
    else:
        yield schema.NO_FRAME, read_image(item.uri, decode)


def _row(
    item: Item, frame: int, status: str, reason: str | None, mask_uri: str | None, scores: dict
) -> dict:
    return {
        schema.ID: item.id,
        schema.URI: item.source_uri,
        schema.KIND: item.kind,
        schema.TAGS: list(item.tags),
        schema.FRAME_INDEX: None if frame == schema.NO_FRAME else frame,
        schema.STATUS: status,
        schema.REASON: reason,
        schema.MASK_URI: mask_uri,
        schema.SCORES: dumps(scores),
        schema.SOURCE_INDEX: item.source_index,
        schema.GROUP: item.id,
    }


def tag_fractions(mask: np.ndarray, item: Item) -> dict[str, float]:
    """{tag: share of the mask's pixels predicted as that tag} (mask HxW uint8)."""
    return {
        tag: round(float(np.mean(mask == tid)), 4)
        for tag, tid in zip(item.tags, item.tag_ids, strict=True)
    }


def predict_item(
    model: DeepLabV3, item: Item, out_uri: str, long_side: int, cfg: PredictConfig
) -> list[dict]:
    """Masks of one item written under out_uri; its manifest rows (a failed row on error)."""
    if item.error:
        return [_row(item, schema.NO_FRAME, schema.FAILED, item.error, None, {})]
    allowed = (schema.BACKGROUND, *item.tag_ids) if cfg.restrict_to_tags else None
    rows = []
    try:
        for frame, image in _frames(item, cfg.decode):
            mask = segment(model, image, long_side, allowed=allowed)
            relative = (
                schema.image_mask_path(item.id)
                if frame == schema.NO_FRAME
                else schema.frame_mask_path(item.id, frame)
            )
            storage.write_bytes(storage.join(out_uri, relative), encode_png(mask))
            rows.append(
                _row(item, frame, schema.LABELLED, None, relative, tag_fractions(mask, item))
            )
    except (DecodeError, FileNotFoundError, StorageError) as error:
        rows.append(
            _row(item, schema.NO_FRAME, schema.FAILED, str(error) or type(error).__name__, None, {})
        )
    return rows


def _predict_rows(model, items, out_uri: str, long_side: int, cfg: PredictConfig) -> list[dict]:
    if cfg.resources.actors == 0:
        rows = []
        with progress_bar("predict", total=len(items), unit="items") as bar:
            for item in items:
                rows += predict_item(model, item, out_uri, long_side, cfg)
                bar.update(1)
        return rows
    from pipeline.predict_dataflow import predict_on_ray
    from pipeline.runtime import init_ray

    init_ray()  # joins RAY_ADDRESS or the Ray the caller started; else a local one
    return predict_on_ray(model, items, out_uri, long_side, cfg)


def with_tracking_uri(cfg: PredictConfig, model_uri: str, out_uri: str) -> PredictConfig:
    """cfg with tracking_uri resolved by pipeline.tracking's rule when model_uri is an MLflow URI
    (models:/, runs:/): the store beside the --out label set unless given or in the environment."""
    from dataclasses import replace

    from pipeline.registry import MLFLOW_SCHEMES
    from pipeline.tracking import tracking_uri_for

    if not model_uri.startswith(MLFLOW_SCHEMES):
        return cfg
    return replace(cfg, tracking_uri=tracking_uri_for(cfg.tracking_uri, out_uri, artifact=True))


def run_predict(
    model_uri: str,
    collection_uri: str,
    out_uri: str,
    cfg: PredictConfig | None = None,
    overwrite: bool = False,
) -> dict:
    """Segment every item of a collection into out_uri; returns the run.json content.

    out_uri may hold only a label set this model and config made (it is rewritten); overwrite
    removes any other first. LabelSetError when every row failed."""
    from pipeline.labelset_guard import claim, code_version
    from pipeline.preflight import check_outcome, check_predict

    cfg = with_tracking_uri(cfg or PredictConfig(), model_uri, out_uri)
    started = time.time()
    collection, model, info, record = check_predict(collection_uri, model_uri, out_uri, cfg)
    long_side = cfg.long_side or int(info.get("eval_long_side") or 512)
    with claim(out_uri, record, overwrite):
        rows = _predict_rows(model, collection.items, out_uri, long_side, cfg)
        write_manifest(out_uri, rows)
        run = {
            "collection": collection.root,
            "model_uri": model_uri,
            "kind": "prediction",
            "code_version": code_version(),
            "config": flatten(cfg),
            "long_side": long_side,
            "classes": list(info["classes"]),
            "items": len(collection.items),
            "counts": status_counts(rows),
            "wall_seconds": round(time.time() - started, 2),
            "fingerprint": record,
        }
        write_run_json(out_uri, run)
    log.info("predicted %s", json.dumps(run["counts"]))
    check_outcome(out_uri, run["counts"])
    return run
