"""Which frames of a video are relevant to its tags, from per-frame classifier scores.

A shot is judged as a whole (its frames share the shot's mean score): kept when its mean passes
an absolute threshold OR a fraction of the best shot's mean, and the floor. When even the best
shot is under the floor, only the fraction of the best shot's mean decides (``keep_best_shot``):
a web video was found under its tag, so a weak score says more about the classifier than about
the video. Mean-pooled scores of objects covering a few percent of the frame sit far below those
of large ones (dev segtrack_bmx: "bicycle" <= 0.0003 on every frame), and dropping the whole
video there loses every frame of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.video.shots import shot_ranges


@dataclass(frozen=True)
class RelevanceConfig:
    abs_threshold: float = 0.5  # shot mean score at which a shot is kept whatever the others score
    rel_fraction: float = 0.5  # otherwise kept at this fraction of the best shot's mean score
    floor: float = 0.05  # shot mean score below which a shot is dropped (but see keep_best_shot)
    keep_best_shot: bool = True  # best shot under the floor: no floor, shots near the best kept
    frame_window: int = 0  # 0: score = whole-shot mean; n > 0: moving mean over n frames in-shot


def smoothed_scores(scores: np.ndarray, shot_ids: np.ndarray, window: int) -> np.ndarray:
    """(T,) scores -> (T,) float32 scores averaged within each shot (whole shot or a window)."""
    out = np.empty(len(scores), np.float32)
    for a, b in shot_ranges(shot_ids):
        seg = scores[a:b].astype(np.float64)
        if window <= 0 or window >= b - a:
            out[a:b] = seg.mean()
        else:
            kernel = np.ones(window)
            out[a:b] = np.convolve(seg, kernel, "same") / np.convolve(
                np.ones(b - a), kernel, "same"
            )
    return out


def relevant_frames(
    scores: np.ndarray, shot_ids: np.ndarray, cfg: RelevanceConfig
) -> tuple[np.ndarray, list[str | None]]:
    """scores (T,) float32 in [0, 1] (max over the video's tags per frame), shot_ids (T,) ->
    keep (T,) bool and a reason per frame (None when kept; why it was dropped otherwise)."""
    scores = np.asarray(scores, np.float32)
    shot_ids = np.asarray(shot_ids)
    if len(scores) == 0:
        return np.zeros(0, bool), []
    smooth = smoothed_scores(scores, shot_ids, cfg.frame_window)
    best = float(smooth.max())
    best_shot = int(shot_ids[int(smooth.argmax())])
    relative = cfg.rel_fraction * best
    # with the best shot under the floor, the classifier's absolute scale says nothing about this
    # video (small objects): its shots are judged against the best one alone
    floored = best >= cfg.floor or not cfg.keep_best_shot
    keep = smooth >= relative
    if floored:
        keep = (smooth >= cfg.floor) & (keep | (smooth >= cfg.abs_threshold))
    what = "mean score" if cfg.frame_window <= 0 else f"{cfg.frame_window}-frame mean score"
    reasons: list[str | None] = []
    for t in range(len(scores)):
        head = f"shot {int(shot_ids[t])} {what} {smooth[t]:.2f}"
        if keep[t]:
            reasons.append(None)
        elif floored and smooth[t] < cfg.floor:
            reasons.append(f"{head} < floor {cfg.floor:.2f}")
        else:
            reasons.append(
                f"{head} < {cfg.rel_fraction:g} x best shot {best:.2f} (shot {best_shot})"
                f" and < absolute {cfg.abs_threshold:.2f}"
            )
    return keep, reasons
