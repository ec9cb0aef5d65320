"""Class-agnostic motion evidence for one shot, with the camera's own motion removed.

Two cues that fail in opposite places (findings.md, "Videos"):
- the residual of dense DIS flow after a RANSAC homography (misses slow objects);
- the colour difference to a homography-aligned temporal median of neighbouring frames
  (misses objects that stay put, fires on parallax and on ghosts).
They are averaged as probabilities: one cue alone gives at most a 50 % vote, both agree -> high.
Both are scored relative to the frame's own median, so a residual left over by camera motion
that covers most of the frame never reads as foreground.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionConfig:
    flow_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM  # DIS quality preset (~25 ms at 240 px)
    grid_step: int = 6  # pixel step of the flow samples that fit the homography
    ransac_px: float = 1.5  # RANSAC inlier threshold, working-resolution pixels
    flow_offset_px: float = 1.0  # residual above the frame median where flow motion reads 50 %
    flow_scale_px: float = 0.5  # sigmoid width of the flow cue, pixels
    median_offsets: tuple[int, ...] = (-15, -10, -5, 5, 10, 15)  # frames in the background median
    extend_at_shot_ends: bool = True  # near a shot's end, an offset past it is taken further on
    # the other side (+5 -> -20 with the offsets above), so every frame's median has as many frames
    bg_downscale: int = 1  # the background median is computed at 1/this of the working size
    min_median_frames: int = 3  # fewer valid aligned frames than this: no background-median cue
    bg_offset: float = 25.0  # colour distance above the frame median where bgsub reads 50 %
    bg_scale: float = 8.0  # sigmoid width of the bgsub cue, 0-255 units
    clip_pos: float = 4.0  # cap on one cue's foreground log-odds
    clip_neg: float = 4.0  # cap on one cue's "no motion" log-odds
    flow_weight: float = 0.5  # weight of the flow cue in the fused probability (bgsub: the rest)


@dataclass(frozen=True)
class ShotMotion:
    """prob: TxHxW float32 in [0, 1] motion (foreground) evidence; flows: (T-1)xHxWx2 float32
    forward DIS flow t -> t+1 (x, y); homographies: (T-1)x3x3 float64, frame t -> t+1."""

    prob: np.ndarray
    flows: np.ndarray
    homographies: np.ndarray


def dense_flows(grays: np.ndarray, cfg: MotionConfig) -> np.ndarray:
    """grays TxHxW uint8 -> (T-1)xHxWx2 float32 forward flows (prev(p) ~ next(p + flow))."""
    dis = cv2.DISOpticalFlow_create(cfg.flow_preset)
    flows = [dis.calc(grays[t], grays[t + 1], None) for t in range(len(grays) - 1)]
    if not flows:
        return np.zeros((0, *grays.shape[1:], 2), np.float32)
    return np.stack(flows).astype(np.float32)


def fit_homography(flow: np.ndarray, cfg: MotionConfig) -> np.ndarray:
    """HxWx2 flow -> 3x3 homography of the dominant (camera) motion; identity when it fails."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0 : height : cfg.grid_step, 0 : width : cfg.grid_step]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    if len(src) < 8:
        return np.eye(3)
    hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_px)
    return np.eye(3) if hom is None else hom


def flow_residual(flow: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """HxWx2 flow and its camera homography -> HxW float32 magnitude of the unexplained flow."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pts = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
    cam = cv2.perspectiveTransform(pts, hom).reshape(height, width, 2) - pts.reshape(
        height, width, 2
    )
    return np.linalg.norm(flow - cam, axis=-1).astype(np.float32)


def _relative_logit(
    values: np.ndarray, offset: float, scale: float, cfg: MotionConfig
) -> np.ndarray:
    """Log-odds of a per-frame cue measured from that frame's median (robust to global drift),
    clipped to [-clip_neg, clip_pos]; NaN stays NaN (no evidence)."""
    flat = values.reshape(len(values), -1)
    has = np.isfinite(flat).any(axis=1)
    med = np.zeros(len(values), np.float32)
    med[has] = np.nanmedian(flat[has], axis=1)
    z = (values - med[:, None, None] - offset) / scale
    return np.clip(z, -cfg.clip_neg, cfg.clip_pos).astype(np.float32)


def chain(homs: np.ndarray) -> np.ndarray:
    """(T-1)x3x3 consecutive homographies -> Tx3x3 maps from frame 0 to frame t."""
    maps = [np.eye(3)]
    for hom in homs:
        maps.append(hom @ maps[-1])
    return np.stack(maps)


def median_difference(frames: np.ndarray, maps: np.ndarray, cfg: MotionConfig) -> np.ndarray:
    """frames TxHxWx3 uint8, maps Tx3x3 (frame 0 -> t) -> TxHxW float32 colour distance to the
    aligned temporal median, computed at 1/bg_downscale size; NaN where too few aligned
    neighbours cover a pixel."""
    n_frames, height, width = frames.shape[:3]
    size = (max(1, width // cfg.bg_downscale), max(1, height // cfg.bg_downscale))
    scale = np.diag([size[0] / width, size[1] / height, 1.0])
    maps = scale @ maps @ np.linalg.inv(scale)[None]
    small = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in frames])
    out = np.full((n_frames, size[1], size[0]), np.nan, np.float32)
    for t in range(n_frames):
        sources = median_sources(t, n_frames, cfg)
        if len(sources) >= cfg.min_median_frames:
            out[t] = _distance_to_median(small, maps, t, sources, cfg)
    return np.stack([cv2.resize(o, (width, height), interpolation=cv2.INTER_LINEAR) for o in out])


def median_sources(t: int, n_frames: int, cfg: MotionConfig) -> list[int]:
    """Frames whose aligned median is frame t's background. With only one side inside the shot,
    three frames at -5/-10/-15 hold a slow object at 2 of 3 pixels it has just left, and their
    median lights a ghost behind it; continuing past the far offset (-20/-25/-30) keeps the median
    over six frames, as in mid-shot, where the object has left most of them."""
    reach = max((abs(o) for o in cfg.median_offsets), default=0)
    sources = []
    for o in cfg.median_offsets:
        if not 0 <= t + o < n_frames and cfg.extend_at_shot_ends and o != 0:
            o = -int(np.sign(o)) * (reach + abs(o))
        if 0 <= t + o < n_frames:
            sources.append(t + o)
    return sorted(set(sources))


def _distance_to_median(frames, maps, t: int, sources: list[int], cfg: MotionConfig) -> np.ndarray:
    """HxW distance of frame t to the median of the sources warped onto it (NaN: uncovered)."""
    height, width = frames.shape[1:3]
    stack = np.empty((len(sources), height, width, 3), np.float32)
    for i, s in enumerate(sources):
        to_src = maps[s] @ np.linalg.inv(maps[t])  # frame-t pixel -> frame-s pixel
        stack[i] = cv2.warpPerspective(
            frames[s].astype(np.float32), to_src, (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan, np.nan, np.nan),
        )  # fmt: skip
    valid = np.isfinite(stack[..., 0]).sum(axis=0)
    image = frames[t].astype(np.float32)
    median = _nan_median(stack)
    median = np.where(np.isfinite(median), median, image)
    dist = _envelope_distance(image, median)
    dist[valid < cfg.min_median_frames] = np.nan
    return dist


def _envelope_distance(image: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Max-channel distance of image to the 3x3 min/max envelope of the median: a 1-pixel
    misalignment of the homography then does not light up every edge."""
    kernel = np.ones((3, 3), np.uint8)
    above = image - cv2.dilate(median, kernel)
    below = cv2.erode(median, kernel) - image
    return np.maximum(np.maximum(above, below), 0).max(axis=-1)


def _nan_median(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (lower median; faster than np.nanmedian)."""
    ordered = np.sort(stack, axis=0)  # NaN sorts last
    count = np.isfinite(ordered).sum(axis=0)
    index = np.maximum(count - 1, 0) // 2
    return np.take_along_axis(ordered, index[None], axis=0)[0]


def shot_motion(frames: np.ndarray, cfg: MotionConfig) -> ShotMotion:
    """frames TxHxWx3 uint8 RGB of one shot (working resolution) -> fused motion evidence."""
    n_frames, height, width = frames.shape[:3]
    grays = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    flows = dense_flows(grays, cfg)
    homs = np.stack([fit_homography(f, cfg) for f in flows]) if len(flows) else np.zeros((0, 3, 3))
    if n_frames < 2:
        return ShotMotion(np.zeros((n_frames, height, width), np.float32), flows, homs)
    residual = [flow_residual(flows[t], homs[t]) for t in range(n_frames - 1)]
    back = dense_flows(grays[[-1, -2]], cfg)[0]
    residual.append(flow_residual(back, fit_homography(back, cfg)))
    flow_z = _relative_logit(np.stack(residual), cfg.flow_offset_px, cfg.flow_scale_px, cfg)
    dist = median_difference(frames, chain(homs), cfg)
    bg_z = _relative_logit(dist, cfg.bg_offset, cfg.bg_scale, cfg)
    flow_p, bg_p = _sigmoid(flow_z), _sigmoid(bg_z)
    fused = cfg.flow_weight * flow_p + (1.0 - cfg.flow_weight) * bg_p
    missing = ~np.isfinite(bg_z)
    fused[missing] = flow_p[missing]
    return ShotMotion(fused.astype(np.float32), flows, homs)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
