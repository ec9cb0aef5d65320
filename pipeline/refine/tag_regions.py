"""Which tag each salient region gets: CAM evidence pooled over connected regions (Oh et al. 2017).

Saliency says where objects are; the CAM only says which tag a region is. A CAM is averaged over
each 8-connected foreground region rather than read per pixel, because a from-scratch classifier's
maps are coarse and sit beside the object as often as on it. A tag whose map never fires (all
zeros: the classifier cannot see that class) carries no evidence; regions that no live CAM supports
go to such a "silent" tag by elimination, and so do the weakly activated parts of regions a
live tag wins (e.g. the motorbike under a person the classifier does see). A region that two live
tags both support clearly (two objects touching) is split between them per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.schema import BACKGROUND, IGNORE


@dataclass(frozen=True)
class TagRegionConfig:
    live_peak: float = 0.05  # a tag's CAM whose maximum is below this is silent (no evidence)
    support: float = 0.05  # a region's mean CAM must reach this to count as support for a tag
    split_ratio: float = 0.6  # split a region per pixel when the runner-up's support is >= this
    # share of the winner's; otherwise the whole region takes the winner
    silent_split: float = 0.5  # in a region a live tag wins while some tag is silent, pixels where
    # the winner's CAM is below this go to the silent tag (the object the classifier cannot see)
    ignore_unsupported: bool = False  # True: regions no CAM supports (and no silent tag) -> 255
    contrast: bool = True  # divide each map by its image-wide mean first (see contrast_maps)


def live_tags(cams: np.ndarray, live_peak: float) -> np.ndarray:
    """KxHxW CAMs -> (K,) bool: which tags' maps carry any evidence at all."""
    if cams.shape[0] == 0:
        return np.zeros(0, bool)
    return cams.reshape(cams.shape[0], -1).max(axis=1) >= live_peak


def contrast_maps(cams: np.ndarray) -> np.ndarray:
    """KxHxW CAMs -> KxHxW float32, each map divided by its own image-wide mean and all scaled
    by the largest mean: a tag is judged by where it fires MORE than it does elsewhere in the
    image. A from-scratch classifier's map often glows over the context of its class (road for a
    car); without this, such a map outbids a tag that fires only, and less, on its object."""
    means = cams.reshape(cams.shape[0], -1).mean(axis=1)
    return (cams / np.maximum(means, 1e-3)[:, None, None] * means.max()).astype(np.float32)


def region_support(regions: np.ndarray, n: int, cams: np.ndarray) -> np.ndarray:
    """HxW int32 region index (0 = none, 1..n) and KxHxW CAMs -> n x K mean CAM per region."""
    flat = regions.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    sums = np.stack([np.bincount(flat, m.ravel(), minlength=n + 1)[1:] for m in cams], axis=1)
    return (sums / np.maximum(area, 1)[:, None]).astype(np.float32)


def _region_label(
    support: np.ndarray, live: np.ndarray, cfg: TagRegionConfig
) -> tuple[int, int | None]:
    """(K,) support of one region -> (tag index or -1 = ignore, second tag index to split with)."""
    if not live.any():
        return 0, None
    masked = np.where(live, support, -1.0)
    order = np.argsort(-masked, kind="stable")
    best = int(order[0])
    if masked[best] < cfg.support:
        silent = np.flatnonzero(~live)
        if silent.size:
            return int(silent[0]), None
        return (-1 if cfg.ignore_unsupported else best), None
    if live.sum() > 1 and masked[order[1]] >= cfg.split_ratio * masked[best]:
        return best, int(order[1])
    return best, None


def assign_regions(
    fg: np.ndarray, cams: np.ndarray | None, tag_ids: list[int], cfg: TagRegionConfig
) -> np.ndarray:
    """Give each connected foreground region one tag (or two, split per pixel).

    fg: HxW bool foreground. cams: KxHxW float32 in [0, 1] (one map per tag) or None.
    tag_ids: K label indices (non-empty). Returns HxW uint8: 0 background, tag id, 255 = ignore
    (only with ``ignore_unsupported``). Without a CAM, or with one tag, all foreground takes the
    first tag.
    """
    if cams is None or len(tag_ids) == 1:
        return np.where(fg, tag_ids[0], BACKGROUND).astype(np.uint8)
    lut = np.array([*tag_ids, IGNORE], np.uint8)  # index -1 -> IGNORE
    n, regions = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    labels = np.full(fg.shape, BACKGROUND, np.uint8)
    live = live_tags(cams, cfg.live_peak)
    silent = np.flatnonzero(~live)
    if cfg.contrast:
        cams = contrast_maps(cams)
    for r, support in enumerate(region_support(regions, n - 1, cams), start=1):
        inside = regions == r
        best, second = _region_label(support, live, cfg)
        if second is None and best >= 0 and live[best] and silent.size and cfg.silent_split > 0:
            weak = cams[best][inside] < cfg.silent_split
            labels[inside] = np.where(weak, tag_ids[silent[0]], tag_ids[best])
        elif second is None:
            labels[inside] = lut[best]
        else:
            pair = np.array([best, second])
            labels[inside] = lut[pair[cams[pair][:, inside].argmax(axis=0)]]
    return labels
