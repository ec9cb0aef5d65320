"""Per-item labelling: an image, or a window of video frames, from frames + CAMs to masks.

Pure functions composing the stage cores; the Ray adapters in `cluster/stages.py` call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline import schema
from pipeline.label_config import VideoConfig
from pipeline.refine.image_labeller import ImageLabelConfig, label_image
from pipeline.video.relevance import relevant_frames
from pipeline.video.segment import segment_video
from pipeline.video.shots import split_shots


@dataclass(frozen=True)
class FrameLabel:
    """The outcome for one image or video frame."""

    status: str
    reason: str | None
    mask: np.ndarray | None  # HxW uint8, IGNORE = 255; None unless labelled


def label_image_item(
    image: np.ndarray,
    cam: np.ndarray | None,
    tag_ids: list[int],
    cfg: ImageLabelConfig,
    features: np.ndarray | None = None,
) -> FrameLabel:
    """image HxWx3 uint8 RGB, cam Kxhxw float32 in [0,1] or None, features Cxhxw (the backbone's
    stride-8 features) or None -> one labelled FrameLabel."""
    mask = label_image(image, cam, tag_ids, cfg, features=features)
    return FrameLabel(schema.LABELLED, None, mask)


def label_video_window(
    frames: np.ndarray,
    cams: np.ndarray | None,
    scores: np.ndarray | None,
    tag_ids: list[int],
    cfg: VideoConfig,
    image_cfg: ImageLabelConfig,
    features: np.ndarray | None = None,
) -> list[FrameLabel]:
    """frames TxHxWx3 uint8 RGB; cams TxKxhxw float32 in [0,1] or None; scores TxK float32 or None;
    features TxCxhxw float (the classifier backbone's feature maps) or None.

    Frames judged irrelevant to the tags become `filtered` with the relevance reason; the kept ones
    are segmented by the graph path, the per-frame labeller, or both (cfg.mode). In graph mode a
    kept frame whose cut found nothing moving (cfg.per_frame_below) gets the per-frame labeller.
    """
    frame_list = list(frames)
    shot_ids = split_shots(frame_list, cfg.shots)
    keep, reasons = _relevance(scores, shot_ids, tag_ids, cfg)
    cam_list = None if cams is None or cams.shape[1] == 0 else list(cams)
    feature_list = None if features is None else list(features)

    def per_frame(t: int) -> np.ndarray:
        """The image labeller on frame t with its own CAMs and features."""
        cam = None if cam_list is None else cam_list[t]
        feature = None if feature_list is None else feature_list[t]
        return label_image(frame_list[t], cam, tag_ids, image_cfg, features=feature)

    if cfg.mode == "crf" or not tag_ids:
        masks = [per_frame(t) if keep[t] else None for t in range(len(frame_list))]
    else:
        masks = segment_video(
            frame_list, cam_list, tag_ids, keep, shot_ids, cfg.segment, feature_list
        )
        if cfg.mode == "both":
            masks = [None if m is None else _agree(m, per_frame(t)) for t, m in enumerate(masks)]
        else:
            masks = [
                per_frame(t) if m is not None and nothing_moved(m, cfg.per_frame_below) else m
                for t, m in enumerate(masks)
            ]
    return [
        FrameLabel(schema.LABELLED, None, m)
        if keep[t]
        else FrameLabel(schema.FILTERED, reasons[t], None)
        for t, m in enumerate(masks)
    ]


def _relevance(
    scores: np.ndarray | None, shot_ids: np.ndarray, tag_ids: list[int], cfg: VideoConfig
) -> tuple[np.ndarray, list[str | None]]:
    """Every frame is kept when there is no classifier score or the video is a negative."""
    if scores is None or not tag_ids or scores.shape[1] == 0:
        return np.ones(len(shot_ids), bool), [None] * len(shot_ids)
    return relevant_frames(scores.max(axis=1).astype(np.float32), shot_ids, cfg.relevance)


def nothing_moved(mask: np.ndarray, below: float) -> bool:
    """A cut's HxW uint8 mask (0 background, 255 ignore, else a tag) marks less than `below` of
    its pixels as foreground: the motion route found no object in that frame. An all-ignore mask
    (a cut over too much of the frame) is the opposite case and stays ignore."""
    if (mask == schema.IGNORE).all():
        return False
    return bool(((mask != schema.BACKGROUND) & (mask != schema.IGNORE)).mean() < below)


def _agree(graph_mask: np.ndarray, frame_mask: np.ndarray) -> np.ndarray:
    """'both' mode: pixels where the graph cut and the per-frame labeller (both HxW uint8) disagree
    become ignore."""
    merged = graph_mask.copy()
    merged[(frame_mask != graph_mask) & (frame_mask != schema.IGNORE)] = schema.IGNORE
    return merged
