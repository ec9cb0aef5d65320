"""Thin Ray Data adapters of the actor stages (CAM, refine): heavy state in __init__, one core call
per row (the row loop, timing, failed rows and batching: stage_base); the task stages, decode and
write, are in io_stages.py.

Rows are images (a 1-frame stack) or windows of video frames; see `pipeline.schema` for columns.
A row that has failed passes through every later stage untouched.
"""

from __future__ import annotations

import os
from dataclasses import replace

import cv2
import numpy as np

from pipeline import schema
from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier
from pipeline.cluster.io_stages import TENSORS, DecodeStage, WriteStage
from pipeline.cluster.stage_base import BatchStage, Stage
from pipeline.label_config import PseudoLabelConfig
from pipeline.labelling import label_image_item, label_video_window
from pipeline.models.imagenet_prior import load_prior
from pipeline.models.pixel_head import PixelHead, head_maps, mix_into_cams
from pipeline.rows import dumps, iter_rows, loads


def threads_of_this_worker() -> None:
    """OpenCV's thread pool sized to this worker's CPUs, as torch's already is: Ray sets
    OMP_NUM_THREADS from the actor's num_cpus. OpenCV's default, a thread per core of the machine
    in every actor, has the actors' resizes and colour conversions compete for every core."""
    cv2.setNumThreads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))


class CamStage(BatchStage):
    """Actor: loads the classifier once; adds CAMs (TxKxhxw) and tag scores (TxK) to each row,
    and the backbone's stride-8 features (TxCxhxw) for the appearance terms of the video cut and
    the image route's GrabCut step.

    All frames of the batch's live rows go through compute_cams together (it batches same-size
    images), so the network sees full batches, not one row at a time; without a model every row
    passes through with empty CAMs."""

    timing, tensors = "cam", TENSORS

    def __init__(
        self,
        model_uri: str | None,
        cfg: CamConfig,
        pixel_head: dict | None = None,
        head_share: float = 0.5,
        keep_pixel_features: bool = False,
    ):
        threads_of_this_worker()
        self.cfg = cfg
        self.device = _device()
        self.model, self.prior = None, None
        self.head = None if pixel_head is None else PixelHead.from_arrays(pixel_head)
        self.head_share, self.keep_pixel_features = head_share, keep_pixel_features
        if model_uri:
            self.model, model_cfg, classes = load_classifier(model_uri, device=self.device)
            if cfg.imagenet_prior and classes:
                self.prior = load_prior(self.model.backbone, model_cfg.backbone, list(classes))
                self.prior = self.prior.to(self.device) if self.prior is not None else None

    def passes(self, row: dict) -> bool:
        return self.model is None or super().passes(row)

    def pass_through(self, row: dict) -> dict:
        row[schema.CAM], row[schema.TAG_SCORES] = _no_cams(len(row[schema.FRAMES]))
        row[schema.FEATURES] = _no_features(len(row[schema.FRAMES]))
        if self.keep_pixel_features:
            row[schema.PIXEL_FEATURES] = _no_features(len(row[schema.FRAMES]))
        return row

    def weight(self, row: dict) -> float:
        return len(row[schema.FRAMES])

    def compute_batch(self, live: list[dict]) -> list[list[dict]]:
        videos = [r for r in live if r[schema.KIND] == schema.KIND_VIDEO]
        images = [r for r in live if r[schema.KIND] != schema.KIND_VIDEO]
        wants_pixel = self.head is not None or self.keep_pixel_features
        pixel = self._add_cams(images, self.cfg, wants_pixel)
        if wants_pixel:
            self._add_pixel_head(images, pixel)
        if self.keep_pixel_features:
            for row in videos:  # every row has the column (a batch's columns are shared)
                row[schema.PIXEL_FEATURES] = _no_features(len(row[schema.FRAMES]))
        # the video cut's CAM term (threshold, agreement gate) is set for the plain CAMs
        self._add_cams(videos, replace(self.cfg, layer_cam=False))
        return [[row] for row in live]

    def _add_cams(self, rows: list[dict], cfg: CamConfig, pixel: bool = False) -> list:
        """CAMs, tag scores and stride-8 features into the rows; returns each frame's
        pixel_features from the same pass when pixel, else an empty list."""
        frames = [frame for r in rows for frame in r[schema.FRAMES]]
        if not frames:
            return []
        tags = [loads(r[schema.TAG_IDS]) for r in rows for _ in r[schema.FRAMES]]
        features: list = []
        pixel_kept: list | None = [] if pixel else None
        cams, scores = compute_cams(
            self.model, frames, tags, cfg, self.device, self.prior, features, pixel_kept
        )
        at = 0
        for row in rows:
            n = len(row[schema.FRAMES])
            row[schema.CAM] = np.stack(cams[at : at + n]).astype(np.float32)
            row[schema.TAG_SCORES] = np.stack(scores[at : at + n]).astype(np.float32)
            row[schema.FEATURES] = np.stack(features[at : at + n])
            at += n
        return pixel_kept or []

    def _add_pixel_head(self, images: list[dict], features: list[np.ndarray]) -> None:
        for row, feature in zip(images, features, strict=True):
            if self.keep_pixel_features:
                row[schema.PIXEL_FEATURES] = feature[None]
            if self.head is not None:
                tags = loads(row[schema.TAG_IDS])
                maps = head_maps(self.head, feature, tags)
                row[schema.CAM] = mix_into_cams(
                    row[schema.CAM][0], maps, tags, self.head.seen, self.head_share
                )[None]


def _no_cams(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n_frames, 0, 1, 1), np.float32), np.zeros((n_frames, 0), np.float32)


def _no_features(n_frames: int) -> np.ndarray:
    return np.zeros((n_frames, 0, 1, 1), np.float16)


def _device() -> str:
    # deferred: loads torch only where a model is built or run
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RefineStage(Stage):
    """CPU actor: CAMs -> masks (image labeller, or relevance + graph cut for a video window);
    a failed row gets an empty mask and its reason per frame. Frames are dropped here."""

    timing, tensors = "refine", TENSORS

    def __init__(self, cfg: PseudoLabelConfig):
        threads_of_this_worker()
        self.cfg = cfg

    def compute(self, row: dict) -> list[dict]:
        row = self._refine(row)
        row.pop(schema.FRAMES)
        row.pop(schema.FEATURES, None)
        return [row]

    def pass_through(self, row: dict) -> dict:
        row[schema.MASKS] = np.zeros((1, 1, 1), np.uint8)
        row[schema.FRAME_STATUS] = dumps([schema.FAILED])
        row[schema.FRAME_REASONS] = dumps([row[schema.REASON]])
        row.pop(schema.FRAMES)
        row.pop(schema.FEATURES, None)
        return row

    def _refine(self, row: dict) -> dict:
        frames, tag_ids = row[schema.FRAMES], loads(row[schema.TAG_IDS])
        cams = row[schema.CAM] if row[schema.CAM].shape[1] else None
        features = row.get(schema.FEATURES)
        features = features if features is not None and features.shape[1] else None
        if row[schema.KIND] == schema.KIND_IMAGE:
            cam = None if cams is None else cams[0]
            feature = None if features is None else features[0]
            labels = [label_image_item(frames[0], cam, tag_ids, self.cfg.image, feature)]
        else:
            scores = row[schema.TAG_SCORES] if cams is not None else None
            labels = label_video_window(
                frames, cams, scores, tag_ids, self.cfg.video, self.cfg.image, features
            )
        height, width = frames.shape[1:3]
        masks = [
            lab.mask if lab.mask is not None else np.zeros((height, width), np.uint8)
            for lab in labels
        ]
        row[schema.MASKS] = np.stack(masks)
        row[schema.FRAME_STATUS] = dumps([lab.status for lab in labels])
        row[schema.FRAME_REASONS] = dumps([lab.reason for lab in labels])
        return row


class LabelItemsStage:
    """CPU actor of a cluster without GPUs (resources.fuse_cam_refine): every stage of a work unit
    (one video, or a few images: io_stages.work_units) in one process, item by item as the research
    loop runs them: decode, CAM, refinement, then the masks and one manifest part written. Frames
    and masks never go through the object store, and no decode or write task runs beside the
    actors (docs/cluster.md). Emits the unit's manifest rows, as the write stage does."""

    def __init__(self, cam_kwargs: dict, cfg: PseudoLabelConfig, out_uri: str, skip_groups):
        self.decode = DecodeStage(cfg.decode, skip_groups)
        self.cam, self.refine = CamStage(**cam_kwargs), RefineStage(cfg)
        self.write = WriteStage(out_uri, cfg.output.save_cams)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        refined = []
        for unit in iter_rows(batch):
            for item in loads(unit[schema.ITEMS]):
                for window in self.decode.process([item]):
                    refined.extend(self.refine.process(self.cam.process([window])))
        return self.write.output(self.write.process(refined))
