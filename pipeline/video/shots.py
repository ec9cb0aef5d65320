"""Hard shot cuts from the Bhattacharyya distance of consecutive HSV colour histograms.

Measured on web video (findings.md): about 0.8 across a cut, below 0.11 within a shot, so a
fixed threshold in between separates them. Dissolves and fades are not detected.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ShotConfig:
    cut_threshold: float = 0.4  # Bhattacharyya distance above which consecutive frames are a cut
    bins: tuple[int, int, int] = (16, 8, 8)  # HSV histogram bins (hue, saturation, value)
    thumb_height: int = 64  # frames are shrunk to this height first (speed; noise-robust)
    min_shot_len: int = 3  # a cut closer than this to the previous one is dropped (flashes)


def hsv_histogram(frame: np.ndarray, cfg: ShotConfig) -> np.ndarray:
    """HxWx3 uint8 RGB -> flattened normalised HSV histogram, float32."""
    height, width = frame.shape[:2]
    size = (max(1, round(width * cfg.thumb_height / height)), cfg.thumb_height)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(cfg.bins), [0, 180, 0, 256, 0, 256])
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32).ravel()


def cut_distances(frames: list[np.ndarray], cfg: ShotConfig) -> np.ndarray:
    """T frames -> (T-1,) float32 Bhattacharyya distance between frames t and t+1."""
    hists = [hsv_histogram(f, cfg) for f in frames]
    return np.array(
        [
            cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA)
            for a, b in zip(hists, hists[1:], strict=False)
        ],
        dtype=np.float32,
    )


def split_shots(frames: list[np.ndarray], cfg: ShotConfig) -> np.ndarray:
    """frames: T x (HxWx3 uint8 RGB) -> shot id per frame, (T,) int32, 0-based, non-decreasing."""
    ids = np.zeros(len(frames), np.int32)
    last_cut = 0
    for t, dist in enumerate(cut_distances(frames, cfg), start=1):
        if dist > cfg.cut_threshold and t - last_cut >= cfg.min_shot_len:
            ids[t:] += 1
            last_cut = t
    return ids


def shot_ranges(shot_ids: np.ndarray) -> list[tuple[int, int]]:
    """(T,) shot ids -> [(start, stop)] half-open frame ranges of each run of equal ids."""
    if len(shot_ids) == 0:
        return []
    starts = [0, *(np.flatnonzero(np.diff(shot_ids) != 0) + 1).tolist()]
    return list(zip(starts, [*starts[1:], len(shot_ids)], strict=True))
