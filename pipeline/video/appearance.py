"""Per-shot appearance model on the classifier backbone's features: a linear discriminant.

The colour GMMs of colour.py judge a pixel by its RGB alone, so a sunlit white car reads as the
white building beside it. The backbone's shallow features (stride 8) carry texture and parts as
well as colour. Fitted on the same confident seed pixels as the colour models, a Gaussian per side
with a shared covariance (Fisher's linear discriminant) gives a log-likelihood ratio that is linear
in the features, in closed form: no solver, no iterations, the same result on every run.
Being linear, it is evaluated on the feature grid and then resized, which equals evaluating it on
resized features.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.video.colour import ColourConfig

DEFAULT_RIDGE = 1e-3  # share of the mean variance added to the pooled covariance's diagonal


def feature_llr(
    features: np.ndarray,
    fg_seed: np.ndarray,
    bg_seed: np.ndarray,
    ridge: float,
    cfg: ColourConfig,
) -> np.ndarray | None:
    """features T x C x h x w float (any grid covering the frame); fg_seed, bg_seed T x H x W bool
    seed masks at the working resolution -> T x H x W float32 log-likelihood ratio (object over
    background) clipped to +-cfg.llr_clip, or None when either side has fewer than cfg.min_seeds
    seeds. At most cfg.max_samples seeds per side are used (drawn with cfg.seed); ridge is added to
    the shared covariance's diagonal as a share of its mean variance."""
    if fg_seed.sum() < cfg.min_seeds or bg_seed.sum() < cfg.min_seeds:
        return None
    rng = np.random.default_rng(cfg.seed)
    features = features.astype(np.float32, copy=False)
    obj = _sample(features, fg_seed, cfg.max_samples, rng)
    back = _sample(features, bg_seed, cfg.max_samples, rng)
    weights, bias = _discriminant(obj, back, ridge)
    grid = np.einsum("tchw,c->thw", features, weights.astype(np.float32)) + np.float32(bias)
    height, width = fg_seed.shape[1:]
    llr = np.stack([cv2.resize(g.astype(np.float32), (width, height)) for g in grid])
    return np.clip(llr, -cfg.llr_clip, cfg.llr_clip).astype(np.float32)


def _discriminant(obj: np.ndarray, back: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """N x C samples per side -> (w, b) with w.x + b the log-likelihood ratio of two Gaussians
    with the pooled covariance (equal priors)."""
    cov = 0.5 * (np.cov(obj.T) + np.cov(back.T))
    cov = np.atleast_2d(cov) + ridge * np.trace(np.atleast_2d(cov)) / len(cov) * np.eye(len(cov))
    weights = np.linalg.solve(cov, obj.mean(axis=0) - back.mean(axis=0))
    bias = -0.5 * float((obj.mean(axis=0) + back.mean(axis=0)) @ weights)
    return weights, bias


def _sample(features: np.ndarray, seed: np.ndarray, limit: int, rng) -> np.ndarray:
    """Features bilinearly sampled at up to limit random True pixels of seed -> N x C float64."""
    t, y, x = np.nonzero(seed)
    if len(t) > limit:
        pick = rng.choice(len(t), limit, replace=False)
        t, y, x = t[pick], y[pick], x[pick]
    _, _, h, w = features.shape
    height, width = seed.shape[1:]
    channels_last = np.ascontiguousarray(features.transpose(0, 2, 3, 1))  # gathers whole rows
    fy = np.clip((y + 0.5) * h / height - 0.5, 0, h - 1)
    fx = np.clip((x + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ay, ax = (fy - y0).astype(np.float32)[:, None], (fx - x0).astype(np.float32)[:, None]

    def at(yy, xx):
        return channels_last[t, yy, xx].astype(np.float32)

    top = at(y0, x0) * (1 - ax) + at(y0, x1) * ax
    bottom = at(y1, x0) * (1 - ax) + at(y1, x1) * ax
    return (top * (1 - ay) + bottom * ay).astype(np.float64)
