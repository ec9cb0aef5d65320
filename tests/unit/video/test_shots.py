import numpy as np
from conftest import make_clip

from pipeline.video.shots import ShotConfig, cut_distances, shot_ranges, split_shots


def _other_clip(n: int) -> list[np.ndarray]:
    """A different scene: bright blue-ish texture."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 80, (72, 96, 3)).astype(np.uint8)
    base[..., 2] += 170
    return [np.roll(base, t, axis=1) for t in range(n)]


def test_spliced_clip_has_exactly_one_boundary_at_the_splice():
    first, _ = make_clip(n_frames=7)
    frames = first + _other_clip(5)
    ids = split_shots(frames, ShotConfig())
    assert ids.dtype == np.int32 and ids.shape == (12,)
    assert ids.tolist() == [0] * 7 + [1] * 5


def test_within_shot_distances_are_small_and_cut_is_large():
    first, _ = make_clip(n_frames=6)
    d = cut_distances(first + _other_clip(3), ShotConfig())
    assert d[:5].max() < 0.2 and d[5] > 0.6


def test_flash_frame_does_not_make_a_one_frame_shot():
    frames, _ = make_clip(n_frames=10)
    frames[5] = np.full_like(frames[5], 255)  # a flash
    ids = split_shots(frames, ShotConfig(min_shot_len=3))
    assert ids.max() == 1  # one cut into the flash, the cut back out is dropped


def test_single_frame_and_ranges():
    frames, _ = make_clip(n_frames=1)
    assert split_shots(frames, ShotConfig()).tolist() == [0]
    assert shot_ranges(np.array([0, 0, 1, 1, 1, 2])) == [(0, 2), (2, 5), (5, 6)]
