"""Video frames -> per-frame pseudo-label masks via motion, colour models and 3D min-cuts.

Per shot: motion evidence with the camera removed (motion.py), optional classifier CAMs, colour
GMMs seeded from confident pixels of the relevant frames (colour.py) and, where the classifier's
backbone features are given, a linear discriminant on them fitted on the same seeds
(appearance.py), then binary min-cuts over
windows of consecutive relevant frames with temporal edges along the flow (graph_cut.py). With
several tags, the CAMs decide which tag each foreground pixel gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.refine.shape import ShapeConfig, clean_foreground
from pipeline.refine.tag_regions import contrast_maps
from pipeline.schema import BACKGROUND, IGNORE
from pipeline.video.appearance import DEFAULT_RIDGE, feature_llr
from pipeline.video.colour import ColourConfig, colour_llr
from pipeline.video.graph_cut import CutConfig, cut_volume, uncertain_band
from pipeline.video.motion import MotionConfig, shot_motion
from pipeline.video.shots import shot_ranges


@dataclass(frozen=True)
class VideoSegConfig:
    # frames are processed at this height (flow, GMMs, cuts): the CAMs' input size
    work_height: int = 320
    window: int = 16  # frames per 3D cut (graph memory ~0.55 GB per 16 frames at 320x570)
    motion_weight: float = 1.0  # weight of the motion log-odds in the unary
    motion_clip: float = 4.0  # |motion log-odds| cap before weighting
    colour_weight: float = 1.0  # weight of the appearance term (colour GMMs, backbone features)
    # share of that weight given to the backbone features' discriminant when features are given
    # (the rest stays the colour models'); 0 = colour alone
    feature_share: float = 0.5
    # added to the discriminant's covariance (share of mean variance)
    feature_ridge: float = DEFAULT_RIDGE
    cam_weight: float = 1.0  # weight of the CAM log-odds (when CAMs are given and agree)
    cam_threshold: float = 0.3  # CAM value that reads as 50 % foreground
    # CAM gap (moving minus static pixels) below which CAMs are unused: coarse stride-16 CAMs of a
    # from-scratch classifier (gap ~0.3 on walking people) cut limbs off sharper motion masks
    cam_min_agreement: float = 0.3
    cam_full_agreement: float = 0.6  # gap at which the CAM term gets its full weight
    fg_bias: float = -0.5  # prior log-odds: objects cover less of the frame than background
    seed_fg: float = 0.75  # prior probability above which a pixel seeds the object colour model
    seed_bg: float = 0.25  # prior probability below which a pixel seeds the background model
    colour_rounds: int = 1  # GrabCut-style rounds: refit the colour models on the cut, cut again
    refit_fg_min: float = 0.3  # a cut-foreground pixel seeds the object model above this prior
    refit_bg_max: float = 0.7  # a cut-background pixel seeds the background model below this
    carry_weight: float = 1.0  # log-odds nudge from the previous window's last cut (continuity)
    tag_margin: float = 0.05  # CAM gap between the two best tags below which a pixel is ignore
    tag_contrast: bool = True  # compare tags by contrast CAMs (each over its frame-wide mean), as
    # the image regions do: a map glowing over its class's context must not take the object
    max_fg_fraction: float = 0.8  # a frame cut above this foreground share is unusable -> ignore
    motion: MotionConfig = field(default_factory=MotionConfig)  # camera-compensated motion cues
    colour: ColourConfig = field(default_factory=ColourConfig)  # per-shot colour GMMs
    cut: CutConfig = field(default_factory=CutConfig)  # pairwise weights and the ignore band
    shape: ShapeConfig = field(default_factory=ShapeConfig)  # holes filled, specks dropped

    def __post_init__(self) -> None:
        if not 0 <= self.feature_share <= 1:
            raise ValueError(
                f"video.segment.feature_share must be in [0, 1], not {self.feature_share}"
            )
        if self.feature_ridge < 0:
            raise ValueError(f"video.segment.feature_ridge must be >= 0, not {self.feature_ridge}")


def _logit(p: np.ndarray, clip: float) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.clip(np.log(p / (1 - p)), -clip, clip).astype(np.float32)


def _resize_cams(cams: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """n x (K x h x w) -> n x K x H x W float32 at size (W, H)."""

    def one(cam: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(c.astype(np.float32), size) for c in cam])

    return np.stack([one(cam) for cam in cams])


def _prior(motion_prob: np.ndarray, cams: np.ndarray | None, cfg: VideoSegConfig) -> np.ndarray:
    """TxHxW foreground log-odds from motion (and CAMs) before the colour model."""
    prior = cfg.motion_weight * _logit(motion_prob, cfg.motion_clip) + cfg.fg_bias
    if cams is not None:
        prior += _cam_term(cams.max(axis=1), motion_prob, cfg)
    return prior


def cam_agreement(cam: np.ndarray, motion_prob: np.ndarray, cfg: VideoSegConfig) -> float:
    """TxHxW CAM (max over tags) and motion probability -> mean CAM on confidently moving pixels
    minus mean CAM on confidently static ones (0 when either set is empty)."""
    moving, static = motion_prob > cfg.seed_fg, motion_prob < cfg.seed_bg
    if not moving.any() or not static.any():
        return 0.0
    return float(cam[moving].mean() - cam[static].mean())


def _cam_term(cam: np.ndarray, motion_prob: np.ndarray, cfg: VideoSegConfig) -> np.ndarray:
    """TxHxW CAM log-odds, weighted by how well the shot's CAMs agree with its motion: a
    classifier that fires on context (road, water) rather than on the moving object gets no say,
    one that agrees can split co-moving regions by class (rider vs bike)."""
    span = max(cfg.cam_full_agreement - cfg.cam_min_agreement, 1e-6)
    gate = np.clip((cam_agreement(cam, motion_prob, cfg) - cfg.cam_min_agreement) / span, 0, 1)
    if gate == 0:
        return np.zeros(cam.shape, np.float32)
    threshold = _logit(np.float32(cfg.cam_threshold), cfg.motion_clip)
    return (gate * cfg.cam_weight * (_logit(cam, cfg.motion_clip) - threshold)).astype(np.float32)


def _appearance_term(small, features, fg_seed, bg_seed, cfg: VideoSegConfig) -> np.ndarray:
    """The weighted appearance log-likelihood ratio: the colour models', mixed with the backbone
    features' discriminant where features are given and both sides have enough seeds."""
    colour = colour_llr(small, fg_seed, bg_seed, cfg.colour)
    share = cfg.feature_share if features is not None else 0.0
    learned = None
    if share > 0:
        learned = feature_llr(features, fg_seed, bg_seed, cfg.feature_ridge, cfg.colour)
    if learned is None:
        return cfg.colour_weight * colour
    return cfg.colour_weight * ((1 - share) * colour + share * learned)


def _grabcut(small, features, prior, flows, keep, cfg: VideoSegConfig):
    """Appearance models seeded from the confident prior, cut, then colour_rounds refits of the
    models on the cut (GrabCut); -> (TxHxW bool foreground, TxHxW float32 final unary)."""
    prob = 1.0 / (1.0 + np.exp(-prior))
    kept = keep[:, None, None]
    seeds = (kept & (prob > cfg.seed_fg), kept & (prob < cfg.seed_bg))
    for round_ in range(cfg.colour_rounds + 1):
        unary = prior + _appearance_term(small, features, *seeds, cfg)
        fg = _cut_shot(small, unary, flows, keep, cfg)
        if round_ < cfg.colour_rounds:
            seeds = (kept & fg & (prob > cfg.refit_fg_min), kept & ~fg & (prob < cfg.refit_bg_max))
    return fg, unary


def _windows(keep: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Runs of consecutive True in keep, split into windows of at most size frames."""
    out, start = [], None
    for t, k in enumerate([*keep.tolist(), False]):
        if k and start is None:
            start = t
        elif not k and start is not None:
            out += [(a, min(a + size, t)) for a in range(start, t, size)]
            start = None
    return out


def _carry(prev_fg: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Previous frame's cut moved into the next frame along the flow -> HxW float32 in {-1, 1}."""
    height, width = prev_fg.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    src = prev_fg.astype(np.float32) * 2 - 1
    return cv2.remap(src, xs - flow[..., 0], ys - flow[..., 1], cv2.INTER_NEAREST)


def _cut_shot(small, unary, flows, keep, cfg: VideoSegConfig) -> np.ndarray:
    """Cut windows of consecutive kept frames; TxHxW bool foreground (False where not kept)."""
    fg = np.zeros(unary.shape, bool)
    prev_end = None
    for a, b in _windows(keep, cfg.window):
        u = unary[a:b].copy()
        if prev_end == a and a > 0:  # continue the previous window's cut into this one
            u[0] += cfg.carry_weight * _carry(fg[a - 1], flows[a - 1])
        fg[a:b] = cut_volume(u, small[a:b], flows[a : b - 1], cfg.cut)
        prev_end = b
    return fg


def _label_frame(fg, unary, cams, tag_ids, cfg: VideoSegConfig) -> np.ndarray:
    """Working-resolution labels for one frame: tag ids, 0, or 255 (ignore)."""
    if cams is not None and len(tag_ids) > 1:
        cams = contrast_maps(cams) if cfg.tag_contrast else cams
        order = np.sort(cams, axis=0)
        labels = np.asarray(tag_ids, np.uint8)[cams.argmax(axis=0)]
        ambiguous = fg & (order[-1] - order[-2] < cfg.tag_margin)
    else:
        labels = np.full(fg.shape, tag_ids[0], np.uint8)
        ambiguous = np.zeros(fg.shape, bool)
    out = np.where(fg, labels, np.uint8(BACKGROUND)).astype(np.uint8)
    out[ambiguous | uncertain_band(fg, unary, cfg.cut)] = IGNORE
    if fg.mean() > cfg.max_fg_fraction:
        out[:] = IGNORE
    return out


def _to_source(labels: np.ndarray, fg: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upsample labels to (W, H): smooth foreground outline, nearest-neighbour label values."""
    big = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    soft = cv2.resize(fg.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
    fixed = (big != IGNORE) & (soft != (big != BACKGROUND))
    big[fixed & ~soft] = BACKGROUND
    grow = fixed & soft
    big[grow] = cv2.dilate(big * (big != IGNORE), np.ones((3, 3), np.uint8))[grow]
    return big


def segment_shot(
    frames, cams, tag_ids, keep, cfg: VideoSegConfig, features=None
) -> list[np.ndarray | None]:
    """One shot (lists of n frames/CAMs/feature maps, keep (n,) bool) -> masks at source
    resolution."""
    height, width = frames[0].shape[:2]
    work = (max(1, round(width * cfg.work_height / height)), cfg.work_height)
    small = np.stack([cv2.resize(f, work, interpolation=cv2.INTER_AREA) for f in frames])
    motion = shot_motion(small, cfg.motion)
    cams_w = _resize_cams(cams, work) if cams is not None else None
    prior = _prior(motion.prob, cams_w, cfg)
    feats = np.stack(features) if features is not None else None
    fg, unary = _grabcut(small, feats, prior, motion.flows, keep, cfg)
    out: list[np.ndarray | None] = [None] * len(frames)
    for t in np.flatnonzero(keep):
        fg[t] = clean_foreground(fg[t], cfg.shape)
        frame_cams = cams_w[t] if cams_w is not None else None
        labels = _label_frame(fg[t], unary[t], frame_cams, tag_ids, cfg)
        out[t] = _to_source(labels, fg[t], (width, height))
    return out


def segment_video(
    frames: list[np.ndarray],
    cams: list[np.ndarray] | None,
    tag_ids: list[int],
    keep: np.ndarray,
    shot_ids: np.ndarray,
    cfg: VideoSegConfig,
    features: list[np.ndarray] | None = None,
) -> list[np.ndarray | None]:
    """Pseudo-label masks for the frames of one video.

    frames: T x (HxWx3 uint8 RGB, source resolution). cams: T x (K x h x w float32 in [0, 1]),
    K = len(tag_ids), any h, w; or None (motion and colour only). features: T x (C x h x w float,
    any h, w covering the frame) backbone feature maps for the appearance term, or None (colour
    alone). tag_ids: label indices (>= 1).
    keep: (T,) bool relevant frames. shot_ids: (T,) int shot per frame (temporal links stay
    inside a shot). Returns T masks, HxW uint8 at source resolution: 0 = background, tag id =
    object, 255 = ignore; None where keep is False.
    """
    if not tag_ids:
        raise ValueError("segment_video needs at least one tag id")
    keep = np.asarray(keep, bool)
    out: list[np.ndarray | None] = [None] * len(frames)
    for a, b in shot_ranges(np.asarray(shot_ids)):
        if not keep[a:b].any():
            continue
        shot_cams = cams[a:b] if cams is not None else None
        shot_features = features[a:b] if features is not None else None
        out[a:b] = segment_shot(frames[a:b], shot_cams, tag_ids, keep[a:b], cfg, shot_features)
    return out
