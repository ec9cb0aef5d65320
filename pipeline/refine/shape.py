"""Shape clean-up of a frame's foreground cut: objects are solid and few.

A min-cut driven by motion and colour leaves holes where the object's colour matches the
background (a white car before a white wall) and specks where the background moves (road
markings under a homography that is slightly off). Filling enclosed holes and dropping
components much smaller than the frame's largest removes both without touching the outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ShapeConfig:
    fill_holes: bool = True  # background regions enclosed by foreground become foreground
    max_hole_fraction: float = 0.5  # ... unless larger than this share of the object's area
    min_component_fraction: float = 0.1  # components below this share of the largest are dropped


def fill_holes(fg: np.ndarray, max_fraction: float) -> np.ndarray:
    """HxW bool -> HxW bool with enclosed background regions (4-connected, not touching the
    border) up to max_fraction of the foreground area filled."""
    area = int(fg.sum())
    if area == 0:
        return fg
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~fg).astype(np.uint8), 4)
    height, width = fg.shape
    out = fg.copy()
    for k in range(1, count):
        x, y, w, h, size = stats[k]
        touches = x == 0 or y == 0 or x + w == width or y + h == height
        if not touches and size <= max_fraction * area:
            out[labels == k] = True
    return out


def drop_small_components(fg: np.ndarray, min_fraction: float) -> np.ndarray:
    """HxW bool -> HxW bool keeping 8-connected components of at least min_fraction of the
    largest component's area."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), 8)
    if count <= 2:
        return fg
    sizes = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(count, bool)
    keep[1:] = sizes >= min_fraction * sizes.max()
    return keep[labels]


def clean_foreground(fg: np.ndarray, cfg: ShapeConfig) -> np.ndarray:
    """HxW bool foreground -> HxW bool: small components dropped, then enclosed holes filled."""
    out = drop_small_components(fg, cfg.min_component_fraction)
    return fill_holes(out, cfg.max_hole_fraction) if cfg.fill_holes else out
