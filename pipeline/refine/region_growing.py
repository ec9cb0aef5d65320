"""Seeded region growing (after DSRG, Huang et al. CVPR 2018) from confident cue pixels.

Seeds are pixels whose class probability (saliency + CAM, see ``objectness``) is confident.
Each region then grows DSRG-style into connected pixels whose probability for its class stays
above ``grow``; what no region reaches is flooded from the grown regions along colour edges
(marker watershed, i.e. Adams & Bischof seeded region growing). Flooded pixels whose class the
cues do not favour, and the flood's boundary lines, become ignore (255).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.refine.objectness import ObjectnessConfig, foreground_prob, fuse_cues
from pipeline.schema import IGNORE


@dataclass(frozen=True)
class DSRGConfig:
    seed: float = 0.9  # class probability a pixel needs to be a seed
    grow: float = 0.6  # probability a pixel needs to join an adjacent region of its class (>= 0.5)
    keep_flooded: float = 0.3  # flooded pixels keep their label if its probability is at least this
    cues: ObjectnessConfig = field(default_factory=ObjectnessConfig)  # saliency/CAM fusion settings


def class_probs(prob_fg: np.ndarray, cams: np.ndarray) -> np.ndarray:
    """HxW P(foreground) and KxHxW CAMs -> (1+K)xHxW probabilities (background first).

    All foreground mass goes to the tag with the strongest CAM (ties -> the earlier tag), so
    tags with overlapping CAMs still get seeds; the CAM picks the class, not the extent.
    """
    onehot = np.eye(cams.shape[0], dtype=np.float32)[cams.argmax(axis=0)].transpose(2, 0, 1)
    return np.concatenate([(1 - prob_fg)[None], prob_fg[None] * onehot]).astype(np.float32)


def grow_regions(probs: np.ndarray, seed: float, grow: float) -> np.ndarray:
    """(C)xHxW probabilities -> HxW int32 region index (0..C-1), -1 where no region reached.

    A region is every 8-connected component of {p_c > grow} that holds a seed {p_c > seed}; with
    grow >= 0.5 the classes cannot overlap, so this equals DSRG's iterative growth to convergence.
    """
    regions = np.full(probs.shape[1:], -1, np.int32)
    for c, p in enumerate(probs):
        n, comp = cv2.connectedComponents((p > grow).astype(np.uint8), connectivity=8)
        seeded = np.unique(comp[p > seed])
        keep = np.isin(comp, seeded[seeded > 0])
        regions[keep & (regions < 0)] = c
    return regions


def flood(image: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Fill -1 pixels of ``regions`` by marker watershed on the RGB image; < 0 on flood lines."""
    if (regions >= 0).all() or (regions < 0).all():
        return regions.copy()
    # watershed marks the outermost pixel ring as a boundary: pad so the real border is kept
    bgr = cv2.copyMakeBorder(
        cv2.cvtColor(image, cv2.COLOR_RGB2BGR), 1, 1, 1, 1, cv2.BORDER_REPLICATE
    )
    markers = cv2.copyMakeBorder((regions + 1).astype(np.int32), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    cv2.watershed(bgr, markers)
    return markers[1:-1, 1:-1] - 1  # flood lines (-1 in markers) end up at -2


def dsrg_labels(
    image: np.ndarray, sal: np.ndarray, cams: np.ndarray | None, tag_ids: list[int], cfg: DSRGConfig
) -> np.ndarray:
    """Label one image by seeded region growing.

    image HxWx3 uint8 RGB; sal HxW float32 in [0, 1]; cams KxHxW float32 (at HxW) or None;
    tag_ids: K label indices (non-empty). Returns HxW uint8: 0 background, tag id, 255 = ignore.
    """
    maps = cams if cams is not None else np.zeros((len(tag_ids), *sal.shape), np.float32)
    prob_fg = foreground_prob(fuse_cues(sal, cams, cfg.cues.cam_weight), cfg.cues)
    probs = class_probs(prob_fg, maps)
    grown = grow_regions(probs, cfg.seed, cfg.grow)
    filled = flood(image, grown)
    lut = np.array([0, *tag_ids], np.uint8)
    labels = np.full(sal.shape, IGNORE, np.uint8)
    ok = filled >= 0
    labels[ok] = lut[filled[ok]]
    support = np.take_along_axis(probs, np.clip(filled, 0, None)[None], axis=0)[0]
    labels[(grown < 0) & ok & (support < cfg.keep_flooded)] = IGNORE
    return labels
