"""Synthetic clips with a known answer: a textured square moving over a textured background
while the camera pans."""

from __future__ import annotations

import numpy as np
import pytest


def make_clip(
    n_frames: int = 12, size: tuple[int, int] = (72, 96), seed: int = 0, pan: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (HxWx3 uint8 RGB) and true square masks (HxW bool). The square (reddish texture)
    moves 3 px/frame right; the whole scene shifts `pan` px/frame left (camera motion)."""
    rng = np.random.default_rng(seed)
    height, width = size
    big = rng.integers(40, 140, (height, width + 4 * n_frames, 3)).astype(np.uint8)
    big = np.repeat(np.repeat(big[::4, ::4], 4, 0), 4, 1)[:height, : width + 4 * n_frames]
    big[..., 2] = np.minimum(big[..., 2], 90)  # background is greenish/greyish
    square = rng.integers(0, 60, (5, 5, 3)).astype(np.uint8)
    square = np.repeat(np.repeat(square, 4, 0), 4, 1)  # trackable 4-px blocks, like the background
    square[..., 0] += 190  # object is saturated red
    frames, masks = [], []
    for t in range(n_frames):
        frame = big[:, pan * t : pan * t + width].copy()
        y, x = 26, 20 + 3 * t
        frame[y : y + 20, x : x + 20] = square
        mask = np.zeros((height, width), bool)
        mask[y : y + 20, x : x + 20] = True
        frames.append(frame)
        masks.append(mask)
    return frames, masks


@pytest.fixture
def clip() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return make_clip()
