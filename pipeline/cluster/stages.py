"""Thin Ray Data adapters: one callable per stage, heavy state in __init__, one core call per row
(the row loop, timing, failed rows and batching: stage_base).

Rows are images (a 1-frame stack) or windows of video frames; see `pipeline.schema` for columns.
A row that has failed passes through every later stage untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import schema
from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier
from pipeline.cluster.stage_base import BatchStage, Stage
from pipeline.collection import Item
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.label_config import PseudoLabelConfig
from pipeline.labelling import label_image_item, label_video_window
from pipeline.models.imagenet_prior import load_prior
from pipeline.output import LabelWriter
from pipeline.rows import dumps, loads

TENSORS = (schema.FRAMES, schema.CAM, schema.TAG_SCORES, schema.MASKS)
PLACEHOLDER = np.zeros((1, 1, 1, 3), np.uint8)


def item_row(item: Item) -> dict[str, Any]:
    """The decode stage's input row for one collection item."""
    return {
        schema.ID: item.id,
        schema.URI: item.uri,
        schema.SOURCE_URI: item.source_uri,
        schema.KIND: item.kind or "",
        schema.TAGS: dumps(list(item.tags)),
        schema.TAG_IDS: dumps(list(item.tag_ids)),
        schema.SOURCE_INDEX: item.source_index,
        schema.REASON: item.error or "",
    }


def _decoded(row: dict, window: int, indices: list[int], frames: np.ndarray, failure: str = ""):
    suffix = f"#{window:04d}" if row[schema.KIND] == schema.KIND_VIDEO else ""
    return {
        **row,
        schema.GROUP: f"{row[schema.SOURCE_INDEX]}/{row[schema.ID]}{suffix}",
        schema.STATUS: schema.FAILED if failure else "",
        schema.REASON: failure,
        schema.FRAME_INDICES: dumps(indices),
        schema.FRAMES: frames,
    }


class DecodeStage(Stage):
    """Item rows -> decoded rows (an image, or one row per window of sampled video frames); an item
    that failed earlier (its reason set) or cannot be read becomes one failed row."""

    timing, tensors, errors = "decode", TENSORS, (DecodeError, OSError)

    def __init__(self, cfg: DecodeConfig, skip_groups: frozenset[str]):
        self.cfg, self.skip_groups = cfg, skip_groups

    def prepare(self, row: dict) -> dict:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}

    def passes(self, row: dict) -> bool:
        return bool(row[schema.REASON])

    def pass_through(self, row: dict) -> dict:
        return self.failed(row, row[schema.REASON])

    def compute(self, row: dict) -> list[dict]:
        if row[schema.KIND] == schema.KIND_IMAGE:
            return [
                _decoded(row, 0, [schema.NO_FRAME], read_image(row[schema.URI], self.cfg)[None])
            ]
        return _video_windows(row, self.cfg, self.skip_groups)

    def failed(self, row: dict, reason: str) -> dict:
        return _decoded(row, 0, [schema.NO_FRAME], PLACEHOLDER, reason)

    def reason(self, error: Exception) -> str:
        return "file not found" if isinstance(error, FileNotFoundError) else super().reason(error)


def _video_windows(row: dict, cfg: DecodeConfig, skip_groups: frozenset[str]) -> list[dict]:
    windows, indices, frames = [], [], []
    for frame_index, frame in read_video_frames(row[schema.URI], cfg):
        indices.append(frame_index)
        frames.append(frame)
        if len(frames) == cfg.window_frames:
            windows.append(_decoded(row, len(windows), indices, np.stack(frames)))
            indices, frames = [], []
    if frames:
        windows.append(_decoded(row, len(windows), indices, np.stack(frames)))
    return [w for w in windows if w[schema.GROUP] not in skip_groups]


def decode_batch(
    batch: dict[str, np.ndarray], cfg: DecodeConfig, skip_groups: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Ray Data task: item rows -> decoded rows."""
    return DecodeStage(cfg, skip_groups)(batch)


class CamStage(BatchStage):
    """Actor: loads the classifier once; adds CAMs (TxKxhxw) and tag scores (TxK) to each row.

    All frames of the batch's live rows go through compute_cams together (it batches same-size
    images), so the network sees full batches, not one row at a time; without a model every row
    passes through with empty CAMs."""

    timing, tensors = "cam", TENSORS

    def __init__(self, model_uri: str | None, cfg: CamConfig):
        self.cfg = cfg
        self.device = _device()
        self.model, self.prior = None, None
        if model_uri:
            self.model, model_cfg, classes = load_classifier(model_uri, device=self.device)
            if cfg.imagenet_prior and classes:
                self.prior = load_prior(self.model.backbone, model_cfg.backbone, list(classes))
                self.prior = self.prior.to(self.device) if self.prior is not None else None

    def passes(self, row: dict) -> bool:
        return self.model is None or super().passes(row)

    def pass_through(self, row: dict) -> dict:
        row[schema.CAM], row[schema.TAG_SCORES] = _no_cams(len(row[schema.FRAMES]))
        return row

    def weight(self, row: dict) -> float:
        return len(row[schema.FRAMES])

    def compute_batch(self, live: list[dict]) -> list[list[dict]]:
        frames = [frame for r in live for frame in r[schema.FRAMES]]
        tags = [loads(r[schema.TAG_IDS]) for r in live for _ in r[schema.FRAMES]]
        cams, scores = (
            compute_cams(self.model, frames, tags, self.cfg, self.device, self.prior)
            if frames
            else ([], [])
        )
        at = 0
        for row in live:
            n = len(row[schema.FRAMES])
            row[schema.CAM] = np.stack(cams[at : at + n]).astype(np.float32)
            row[schema.TAG_SCORES] = np.stack(scores[at : at + n]).astype(np.float32)
            at += n
        return [[row] for row in live]


def _no_cams(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n_frames, 0, 1, 1), np.float32), np.zeros((n_frames, 0), np.float32)


def _device() -> str:
    # deferred: loads torch only where a model is built or run
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RefineStage(Stage):
    """CPU actor: CAMs -> masks (image labeller, or relevance + graph cut for a video window);
    a failed row gets an empty mask and its reason per frame. Frames are dropped here."""

    timing, tensors = "refine", TENSORS

    def __init__(self, cfg: PseudoLabelConfig):
        self.cfg = cfg

    def compute(self, row: dict) -> list[dict]:
        row = self._refine(row)
        row.pop(schema.FRAMES)
        return [row]

    def pass_through(self, row: dict) -> dict:
        row[schema.MASKS] = np.zeros((1, 1, 1), np.uint8)
        row[schema.FRAME_STATUS] = dumps([schema.FAILED])
        row[schema.FRAME_REASONS] = dumps([row[schema.REASON]])
        row.pop(schema.FRAMES)
        return row

    def _refine(self, row: dict) -> dict:
        frames, tag_ids = row[schema.FRAMES], loads(row[schema.TAG_IDS])
        cams = row[schema.CAM] if row[schema.CAM].shape[1] else None
        if row[schema.KIND] == schema.KIND_IMAGE:
            labels = [
                label_image_item(
                    frames[0], None if cams is None else cams[0], tag_ids, self.cfg.image
                )
            ]
        else:
            scores = row[schema.TAG_SCORES] if cams is not None else None
            labels = label_video_window(
                frames, cams, scores, tag_ids, self.cfg.video, self.cfg.image
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


class WriteStage(BatchStage):
    """Writes masks (and image CAMs) atomically, then the batch's manifest part; emits one manifest
    row per frame (a failed row too: every row is live here)."""

    timing = "write"

    def __init__(self, out_uri: str, save_cams: bool):
        self.writer = LabelWriter(out_uri, save_cams)

    def passes(self, row: dict) -> bool:
        return False

    def compute_batch(self, live: list[dict]) -> list[list[dict]]:
        groups = [self.writer.frame_rows(row) for row in live]
        self.writer.write_part([out for group in groups for out in group])
        return groups


def write_batch(
    batch: dict[str, np.ndarray], out_uri: str, save_cams: bool
) -> dict[str, np.ndarray]:
    """Ray Data task: the batch's masks and manifest part written (WriteStage); its manifest rows."""
    return WriteStage(out_uri, save_cams)(batch)
