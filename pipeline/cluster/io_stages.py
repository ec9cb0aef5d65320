"""Ray Data task stages: decode (item rows -> decoded rows) and write (masks and manifest parts),
and the fused actors' work units (item rows grouped).

Kept apart from the actor stages (stages.py) so that the task workers import neither torch nor the
refinement cores: each such worker is a fresh process of its own, and the imports were most of
its memory (about 270 MiB with torch, 90 without).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import schema
from pipeline.cluster.stage_base import BatchStage, Stage
from pipeline.collection import Item
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames
from pipeline.output import LabelWriter
from pipeline.rows import dumps

TENSORS = (
    schema.FRAMES,
    schema.CAM,
    schema.TAG_SCORES,
    schema.FEATURES,
    schema.PIXEL_FEATURES,
    schema.MASKS,
)
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


def work_units(rows: list[dict], images_per_unit: int) -> list[list[dict]]:
    """Item rows grouped into the fused actors' work units: each video alone, first (the longest
    work starts first, so the run does not end on one actor cutting a video while the others
    idle), then images images_per_unit at a time (each unit is one manifest part)."""
    videos = [[row] for row in rows if row[schema.KIND] == schema.KIND_VIDEO]
    images = [row for row in rows if row[schema.KIND] != schema.KIND_VIDEO]
    size = max(1, images_per_unit)
    return videos + [images[at : at + size] for at in range(0, len(images), size)]


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
