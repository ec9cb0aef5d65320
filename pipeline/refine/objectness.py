"""Objectness labelling: class-agnostic saliency decides WHERE, the CAM decides WHICH tag.

After Oh et al., CVPR 2017 ("Exploiting saliency for object segmentation from image level
labels"): a saliency foreground is refined with colour models (GrabCut) and a dense CRF, optionally
extended where a CAM is strong, then each connected foreground region takes the tag its CAM
evidence supports (``tag_regions``; or, with ``assign="pixel"``, each pixel the strongest CAM).
Only CAMs that fire at all count as evidence. Pixels stay ignore (255) where the CRF is unsure or
where saliency and CAM contradict each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.refine.crf import CRFConfig, dense_crf
from pipeline.refine.saliency import SALIENCY_SOURCES
from pipeline.refine.shape import ShapeConfig, clean_foreground
from pipeline.refine.tag_regions import TagRegionConfig, assign_regions, live_tags
from pipeline.schema import BACKGROUND, IGNORE

ASSIGN_MODES = ("region", "pixel")


@dataclass(frozen=True)
class ObjectnessConfig:
    cam_weight: float = 0.0  # share of live CAMs in the foreground score (0 = saliency only; best
    # with a from-scratch classifier, whose CAMs sit on context; raise for a pretrained backbone)
    min_area: float = 0.08  # the foreground threshold keeps at least this share of pixels...
    max_area: float = 0.35  # ...and at most this share (true objects cover ~15-23% on average)
    temperature: float = 0.08  # softness of the score -> probability sigmoid around the threshold
    grabcut_iterations: int = 0  # GrabCut colour-model rounds; 0 = off (on dev: same mIoU, 3x cost)
    grabcut_side: int = 160  # longer side (px) GrabCut runs at (its cost grows fast with size)
    grabcut_weight: float = 0.5  # share of the GrabCut mask in the probability fed to the CRF
    confidence: float = 0.65  # CRF posteriors below this become ignore (255)
    cam_low: float = 0.0  # foreground where its (live) tag's CAM is below this: ignore; 0 = off
    # (from-scratch CAMs miss object parts: 0.05 ignored 5% of pixels and cost 16 horse IoU)
    cam_high: float = 0.8  # background where some CAM is above this and saliency is not low: ignore
    crf: CRFConfig = field(default_factory=CRFConfig)  # dense CRF on the 2-label fg/bg problem
    assign: str = "region"  # "region": one tag per connected salient region; "pixel": CAM argmax
    regions: TagRegionConfig = field(default_factory=TagRegionConfig)  # region assignment knobs
    cam_add: float = 0.0  # background pixels where a live CAM exceeds this join the foreground
    # (objects saliency missed); 0 = off
    add_prob: float = 0.2  # ...only where the fused P(foreground) is at least this
    shape: ShapeConfig = field(  # fill holes / drop specks: off, on dev it costs 0.2-0.5 mIoU
        default_factory=lambda: ShapeConfig(fill_holes=False, min_component_fraction=0.0)
    )

    saliency_source: str = "colour"  # class-agnostic cue: "colour" (MB+ saliency), "builtin"
    # (the backbone's own activations, Saleh et al. 2016) or "both" (their mean)

    def __post_init__(self) -> None:
        if self.saliency_source not in SALIENCY_SOURCES:
            raise ValueError(
                f"unknown saliency_source {self.saliency_source!r}; expected one of "
                f"{SALIENCY_SOURCES}"
            )
        if self.assign not in ASSIGN_MODES:
            raise ValueError(f"unknown assign mode {self.assign!r}; expected one of {ASSIGN_MODES}")


def fuse_cues(sal: np.ndarray, cams: np.ndarray | None, cam_weight: float) -> np.ndarray:
    """HxW saliency in [0, 1] and optional KxHxW CAMs -> HxW foreground score in [0, 1]."""
    if cams is None or cams.shape[0] == 0 or cam_weight <= 0:
        return sal.astype(np.float32)
    return ((1 - cam_weight) * sal + cam_weight * cams.max(axis=0)).astype(np.float32)


def foreground_prob(score: np.ndarray, cfg: ObjectnessConfig) -> np.ndarray:
    """HxW score -> HxW float32 P(foreground): a sigmoid around an Otsu threshold that is
    clamped so the foreground covers between ``min_area`` and ``max_area`` of the image."""
    u8 = np.clip(score * 255, 0, 255).astype(np.uint8)
    otsu = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] / 255.0
    lo, hi = np.quantile(score, [1 - cfg.max_area, 1 - cfg.min_area])
    t = float(np.clip(otsu, lo, hi))
    return (1 / (1 + np.exp(-(score - t) / cfg.temperature))).astype(np.float32)


def grabcut_prob(
    image: np.ndarray, prob: np.ndarray, iterations: int, side: int = 160
) -> np.ndarray:
    """Refine P(foreground) with GrabCut colour models run at longer side ``side``; returns the
    HxW float32 cut in [0, 1] (soft only along its upsampled edge), or ``prob`` unchanged where
    the seeds are degenerate (no foreground or no background)."""
    height, width = prob.shape
    scale = min(1.0, side / max(height, width))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cut = grabcut_prob(
            small, cv2.resize(prob, size, interpolation=cv2.INTER_AREA), iterations, side
        )
        return cv2.resize(cut, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = np.where(prob > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[prob > 0.95] = cv2.GC_FGD
    mask[prob < 0.05] = cv2.GC_BGD
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.all() or not fg.any():
        return prob
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's RNG: the same image, the same cut
    try:
        cv2.grabCut(image, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a GMM with too few samples
        return prob
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


def assign_tags(fg: np.ndarray, cams: np.ndarray | None, tag_ids: list[int]) -> np.ndarray:
    """HxW bool foreground -> HxW uint8 labels: each foreground pixel takes the tag with the
    strongest CAM (the first tag when there is no CAM); background stays 0."""
    no_choice = cams is None or len(tag_ids) == 1
    best = np.zeros(fg.shape, np.intp) if no_choice else cams.argmax(axis=0)
    labels = np.asarray(tag_ids, np.uint8)[best]
    return np.where(fg, labels, BACKGROUND).astype(np.uint8)


def disagreement(
    labels: np.ndarray,
    prob: np.ndarray,
    cams: np.ndarray | None,
    tag_ids: list[int],
    cfg: ObjectnessConfig,
) -> np.ndarray:
    """HxW bool: where saliency and a live CAM contradict each other.

    labels HxW uint8 (0 background, tag ids); prob HxW P(foreground); cams KxHxW or None.
    Foreground of a live tag where that tag's CAM is below ``cam_low``, and background that is
    not clearly non-salient where some live CAM is above ``cam_high``. Silent (all-zero) CAMs and
    a missing CAM never disagree.
    """
    out = np.zeros(labels.shape, bool)
    if cams is None or cams.shape[0] == 0:
        return out
    live = live_tags(cams, cfg.regions.live_peak)
    for k, tag in enumerate(tag_ids):
        if live[k]:
            out |= (labels == tag) & (cams[k] < cfg.cam_low)
    if live.any():
        out |= (labels == BACKGROUND) & (cams[live].max(axis=0) > cfg.cam_high) & (prob > 0.25)
    return out


def cam_additions(
    fg: np.ndarray, prob: np.ndarray, cams: np.ndarray | None, cfg: ObjectnessConfig
) -> np.ndarray:
    """HxW bool: background pixels a live CAM claims strongly (> ``cam_add``) where P(foreground)
    is at least ``add_prob``; all False when ``cam_add`` is 0 or there is no live CAM."""
    if cams is None or cams.shape[0] == 0 or cfg.cam_add <= 0:
        return np.zeros(fg.shape, bool)
    return ~fg & (cams.max(axis=0) > cfg.cam_add) & (prob >= cfg.add_prob)


def objectness_labels(
    image: np.ndarray,
    sal: np.ndarray,
    cams: np.ndarray | None,
    tag_ids: list[int],
    cfg: ObjectnessConfig,
) -> np.ndarray:
    """Label one image from saliency + CAM.

    image HxWx3 uint8 RGB; sal HxW float32 in [0, 1]; cams KxHxW float32 in [0, 1] (one per
    tag, already at HxW) or None; tag_ids: K label indices (non-empty).
    Returns HxW uint8: 0 background, tag id, 255 = ignore (unsure or cues disagree).
    """
    live = None if cams is None else cams[live_tags(cams, cfg.regions.live_peak)]
    prob = foreground_prob(fuse_cues(sal, live, cfg.cam_weight), cfg)
    if cfg.grabcut_iterations > 0:
        cut = grabcut_prob(image, prob, cfg.grabcut_iterations, cfg.grabcut_side)
        prob = (1 - cfg.grabcut_weight) * prob + cfg.grabcut_weight * cut
    post = dense_crf(image, np.stack([1 - prob, prob]), cfg.crf)
    added = cam_additions(post[1] > 0.5, prob, live, cfg)
    fg = clean_foreground((post[1] > 0.5) | added, cfg.shape)
    if cfg.assign == "region":
        labels = assign_regions(fg, cams, tag_ids, cfg.regions)
    else:
        labels = assign_tags(fg, cams, tag_ids)
    unsure = (post.max(axis=0) < cfg.confidence) & ~added
    labels[unsure | disagreement(labels, prob, cams, tag_ids, cfg)] = IGNORE
    return labels
