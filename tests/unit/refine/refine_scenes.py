"""Synthetic scenes with a known answer: coloured discs on a textured background.

Imported by name from the refine tests (a plain module, not a conftest, so names stay unique).
"""

from __future__ import annotations

import numpy as np


def disc_mask(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2


def textured(size: int, seed: int = 0) -> np.ndarray:
    """size x size x 3 uint8 greenish noise (a 'grass' background)."""
    rng = np.random.default_rng(seed)
    base = np.array([70, 120, 60], np.float32)
    return np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def make_disc_scene() -> tuple[np.ndarray, np.ndarray]:
    """(image 64x64x3 uint8 RGB with a red disc in the middle, disc mask HxW bool)."""
    image = textured(64)
    disc = disc_mask(64, 32, 30, 13)
    image[disc] = np.clip(
        np.array([200, 40, 40]) + np.random.default_rng(1).normal(0, 8, (disc.sum(), 3)), 0, 255
    )
    return image, disc


def make_two_disc_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image 64x96 with a red disc left and a blue disc right, left mask, right mask)."""
    image = np.concatenate([textured(64, 2), textured(64, 3)[:, :32]], axis=1)
    ys, xs = np.mgrid[:64, :96]
    left = (xs - 28) ** 2 + (ys - 32) ** 2 <= 11**2
    right = (xs - 68) ** 2 + (ys - 32) ** 2 <= 11**2
    image[left], image[right] = (200, 40, 40), (40, 60, 210)
    return image, left, right
