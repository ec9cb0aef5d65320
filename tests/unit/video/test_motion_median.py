"""The background median at a shot's end: a slow object must not leave a ghost behind it."""

from dataclasses import replace

import numpy as np

from pipeline.video.motion import MotionConfig, median_difference, median_sources


def slow_square_clip(n_frames: int = 40, speed: int = 2) -> np.ndarray:
    """Static camera, textured background, a 20-px red square moving `speed` px/frame right."""
    rng = np.random.default_rng(0)
    background = rng.integers(40, 140, (48, 128, 3)).astype(np.uint8)
    frames = np.repeat(background[None], n_frames, axis=0)
    for t in range(n_frames):
        frames[t, 14:34, 20 + speed * t : 40 + speed * t] = (220, 30, 30)
    return frames


def test_sources_keep_six_frames_at_shot_ends_and_never_the_frame_itself():
    cfg = MotionConfig()
    for t in range(50):
        sources = median_sources(t, 50, cfg)
        assert len(sources) == 6 and t not in sources and all(0 <= s < 50 for s in sources)
    assert median_sources(25, 50, cfg) == [10, 15, 20, 30, 35, 40]  # mid-shot: the offsets
    assert median_sources(45, 50, replace(cfg, extend_at_shot_ends=False)) == [30, 35, 40]
    assert len(median_sources(3, 6, cfg)) < 6  # a short shot has what it has


def test_last_frame_has_no_ghost_behind_a_slow_object_and_still_sees_it():
    frames = slow_square_clip()
    maps = np.repeat(np.eye(3)[None], len(frames), axis=0)
    last = len(frames) - 1
    x = 20 + 2 * last  # the square's left edge in the last frame
    ghost, square = (slice(14, 34), slice(x - 10, x)), (slice(14, 34), slice(x, x + 20))
    three = median_difference(frames, maps, MotionConfig(extend_at_shot_ends=False))[last]
    six = median_difference(frames, maps, MotionConfig())[last]
    assert three[ghost].mean() > 100  # the past-only median still holds the square there
    assert six[ghost].mean() < 10
    assert six[square].mean() > 50  # the object itself still stands out
