"""Class-agnostic objectness cues from colour alone: boundary-connectivity saliency and priors.

Minimum barrier distance saliency with the MB+ backgroundness cue (Zhang et al., ICCV 2015),
a centre prior, and resizing of classifier maps. Everything works on a small copy of the image
(``SaliencyConfig.work_side``) because these cues are smooth; callers upsample the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SaliencyConfig:
    work_side: int = 112  # longer side (px) the cues are computed at
    border: float = 0.1  # width of the border strips taken as background seeds (share of side)
    mbd_passes: int = 3  # raster-scan iterations of the barrier distance (3 converges in practice)
    drop_distinct_border: float = 2.5  # drop the one border whose colour is this many std from
    # the others (an object touching that side), from the barrier-distance seeds
    backgroundness_weight: float = 1.0  # weight of the border-colour (Mahalanobis) cue vs MBD
    centre_sigma: float = 0.35  # centre prior std as a share of the image diagonal; 0 = off
    blur: float = 1.0  # Gaussian sigma (px at work_side) applied before the distance transform


SALIENCY_SOURCES = ("colour", "builtin", "both")


def combine_saliency(
    colour: np.ndarray | None, builtin: np.ndarray | None, source: str
) -> np.ndarray:
    """HxW colour saliency and HxW built-in prior, both float in [0, 1] -> HxW float32
    objectness cue: one of them (by ``source``), or their mean. The unused one may be None."""
    if source not in SALIENCY_SOURCES:
        raise ValueError(f"unknown saliency source {source!r}; expected one of {SALIENCY_SOURCES}")
    if source == "colour":
        return colour.astype(np.float32)
    if builtin is None:
        raise ValueError(f"saliency source {source!r} needs the built-in prior map; none given")
    if source == "builtin":
        return builtin.astype(np.float32)
    return ((colour + builtin) / 2).astype(np.float32)


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly resize KxhXw float maps to KxHxW float32 (K may be 0)."""
    if maps.shape[0] == 0:
        return np.zeros((0, height, width), np.float32)
    out = [
        cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        for m in maps
    ]
    return np.stack(out).astype(np.float32)


def centre_prior(height: int, width: int, sigma: float) -> np.ndarray:
    """HxW float32 Gaussian in [0, 1] around the image centre; sigma as a share of the diagonal."""
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / np.hypot(height, width)
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / np.hypot(height, width)
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(x, np.float32)


def _border_masks(height: int, width: int, share: float) -> list[np.ndarray]:
    r = max(1, int(round(share * min(height, width))))
    masks = [np.zeros((height, width), bool) for _ in range(4)]
    masks[0][:r], masks[1][-r:], masks[2][:, :r], masks[3][:, -r:] = True, True, True, True
    return masks  # top, bottom, left, right


def _distinct_border(lab: np.ndarray, masks: list[np.ndarray], n_std: float) -> int | None:
    """Index of the border strip whose mean colour stands out from the other three, if any."""
    means = np.stack([lab[m].mean(axis=0) for m in masks])
    spread = float(np.mean([lab[m].std(axis=0).mean() for m in masks])) + 1e-6
    dist = [np.linalg.norm(means[i] - np.delete(means, i, 0).mean(0)) / spread for i in range(4)]
    i = int(np.argmax(dist))
    return i if dist[i] > n_std else None


def _scan(
    img: np.ndarray, dist: np.ndarray, hi: np.ndarray, lo: np.ndarray, axis: int, step: int
) -> None:
    """One vectorised raster sweep of the barrier distance along ``axis`` (in place)."""
    n = img.shape[axis]
    order = range(1, n) if step > 0 else range(n - 2, -1, -1)
    take = (lambda a, i: a[:, i]) if axis == 1 else (lambda a, i: a[:, :, i])
    for i in order:
        cur_i, prev = take(img, i), i - step
        new_hi = np.maximum(take(hi, prev), cur_i)
        new_lo = np.minimum(take(lo, prev), cur_i)
        cost = new_hi - new_lo
        better = cost < take(dist, i)
        take(dist, i)[better] = cost[better]
        take(hi, i)[better] = new_hi[better]
        take(lo, i)[better] = new_lo[better]


def barrier_distance(channels: np.ndarray, seeds: np.ndarray, passes: int) -> np.ndarray:
    """Approximate minimum barrier distance from ``seeds`` (HxW bool), summed over CxHxW
    channels -> HxW float32."""
    dist = np.where(seeds[None], 0.0, np.inf).astype(np.float32).repeat(channels.shape[0], 0)
    hi, lo = channels.copy(), channels.copy()
    for _ in range(passes):
        for axis, step in ((1, 1), (2, 1), (1, -1), (2, -1)):
            _scan(channels, dist, hi, lo, axis, step)
    dist[~np.isfinite(dist)] = 0.0
    return dist.sum(axis=0)


def backgroundness(lab: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """MB+ cue: Mahalanobis colour distance (HxWx3 Lab -> HxW) to each border strip, summed
    with the most distinct strip dropped."""
    flat = lab.reshape(-1, 3)
    maps = []
    for m in masks:
        px = lab[m]
        inv = np.linalg.inv(np.cov(px.T) + np.eye(3) * 1.0)
        d = flat - px.mean(axis=0)
        maps.append(_normalise(np.sqrt(np.einsum("ij,jk,ik->i", d, inv, d))))
    stack = np.stack(maps)
    return (stack.sum(0) - stack.max(0)).reshape(lab.shape[:2])


def saliency_map(image: np.ndarray, cfg: SaliencyConfig) -> np.ndarray:
    """Class-agnostic saliency of an RGB image.

    image: HxWx3 uint8 RGB. Returns a float32 map in [0, 1] of shape ``small`` (longer side
    ``cfg.work_side``); resize it with :func:`resize_maps`. High = likely object.
    """
    height, width = image.shape[:2]
    scale = cfg.work_side / max(height, width)
    h, w = max(8, round(height * scale)), max(8, round(width * scale))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if cfg.blur > 0:
        small = cv2.GaussianBlur(small, (0, 0), cfg.blur)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    masks = _border_masks(h, w, cfg.border)
    seeds = np.zeros((h, w), bool)
    seeds[[0, -1]], seeds[:, [0, -1]] = True, True
    drop = _distinct_border(lab, masks, cfg.drop_distinct_border)
    if drop is not None:
        edge = (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1])[drop]
        seeds[edge] = False
        seeds[[0, -1], 0], seeds[[0, -1], -1] = True, True
    mbd = _normalise(
        barrier_distance(np.ascontiguousarray(lab.transpose(2, 0, 1)), seeds, cfg.mbd_passes)
    )
    sal = mbd + cfg.backgroundness_weight * _normalise(backgroundness(lab, masks))
    if cfg.centre_sigma > 0:
        sal = sal * centre_prior(h, w, cfg.centre_sigma)
    return _normalise(sal)
