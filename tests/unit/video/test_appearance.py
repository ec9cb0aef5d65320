"""The video cut's appearance model on backbone features: a linear discriminant fitted on the
colour models' seeds, and its share of the appearance term."""

import numpy as np
import pytest
from conftest import make_clip

from pipeline.video import segment
from pipeline.video.appearance import feature_llr
from pipeline.video.colour import ColourConfig
from pipeline.video.segment import VideoSegConfig, segment_video


def _two_textures(n: int = 3, size: int = 32, stride: int = 8, seed: int = 0):
    """T x C x h x w features where the left half of each frame is one texture (feature mean +1
    on channel 0) and the right half another (-1), with noise on every channel."""
    rng = np.random.default_rng(seed)
    h = w = size // stride
    features = rng.normal(0, 0.3, (n, 6, h, w)).astype(np.float32)
    features[:, 0, :, : w // 2] += 1.0
    features[:, 0, :, w // 2 :] -= 1.0
    left = np.zeros((n, size, size), bool)
    left[:, :, : size // 2] = True
    return features, left


def test_the_discriminant_scores_the_seeded_texture_as_object_everywhere():
    features, left = _two_textures()
    fg_seed, bg_seed = left.copy(), ~left
    fg_seed[:, :, 8:] = False  # seeds cover only part of each side
    bg_seed[:, :, :24] = False
    llr = feature_llr(features, fg_seed, bg_seed, 1e-3, ColourConfig(min_seeds=50))
    assert llr.shape == left.shape and llr.dtype == np.float32
    inner = np.zeros_like(left)
    inner[:, :, 2:14] = True
    assert (llr[inner] > 0).mean() > 0.95  # unseeded object pixels included
    assert (llr[:, :, 18:] < 0).mean() > 0.95
    assert np.abs(llr).max() <= ColourConfig().llr_clip


def test_too_few_seeds_give_no_model():
    features, left = _two_textures()
    few = np.zeros_like(left)
    few[0, 0, :3] = True
    assert feature_llr(features, few, ~left, 1e-3, ColourConfig()) is None


def test_the_discriminant_is_the_same_on_every_run():
    features, left = _two_textures(seed=3)
    a = feature_llr(features, left, ~left, 1e-3, ColourConfig(min_seeds=50, max_samples=100))
    b = feature_llr(features, left, ~left, 1e-3, ColourConfig(min_seeds=50, max_samples=100))
    np.testing.assert_array_equal(a, b)


def test_features_take_their_share_of_the_appearance_term_or_leave_it_to_colour(monkeypatch):
    features, left = _two_textures()
    small = np.zeros((*left.shape, 3), np.uint8)  # one colour: the colour models cannot tell
    monkeypatch.setattr(segment, "colour_llr", lambda *a: np.full(left.shape, 2.0, np.float32))
    cfg = VideoSegConfig(colour_weight=1.0, feature_share=0.5)
    cfg = VideoSegConfig(**{**cfg.__dict__, "colour": ColourConfig(min_seeds=50)})
    mixed = segment._appearance_term(small, features, left, ~left, cfg)
    alone = segment._appearance_term(small, None, left, ~left, cfg)
    np.testing.assert_allclose(alone, 2.0)  # without features: colour at the full weight
    learned = feature_llr(features, left, ~left, cfg.feature_ridge, cfg.colour)
    np.testing.assert_allclose(mixed, 0.5 * 2.0 + 0.5 * learned, rtol=1e-6)
    off = VideoSegConfig(**{**cfg.__dict__, "feature_share": 0.0})
    np.testing.assert_allclose(segment._appearance_term(small, features, left, ~left, off), 2.0)


def _mean_iou(out, masks) -> float:
    pairs = zip(out, masks, strict=True)
    return float(np.mean([((m == 7) & g).sum() / ((m == 7) | g).sum() for m, g in pairs]))


def test_features_that_mark_a_colour_alike_object_sharpen_the_cut():
    frames, masks = make_clip(n_frames=12)
    rng = np.random.default_rng(1)
    texture = rng.integers(40, 140, (5, 5, 3)).astype(np.uint8)  # the background's colours
    texture[..., 2] = np.minimum(texture[..., 2], 90)
    for frame, mask in zip(frames, masks, strict=True):
        frame[mask] = np.repeat(np.repeat(texture, 4, 0), 4, 1).reshape(-1, 3)
    features = []
    for mask in masks:  # an ideal backbone: channel 0 lights the object, at stride 8
        grid = mask.reshape(9, 8, 12, 8).mean(axis=(1, 3)).astype(np.float32)
        features.append(np.stack([grid, np.zeros_like(grid)]) + 0.01)
    n, cfg = len(frames), VideoSegConfig(work_height=72)
    keep, shots = np.ones(n, bool), np.zeros(n)
    colour_only = _mean_iou(segment_video(frames, None, [7], keep, shots, cfg), masks)
    with_features = _mean_iou(segment_video(frames, None, [7], keep, shots, cfg, features), masks)
    assert with_features > colour_only + 0.05 and with_features > 0.9


def test_a_share_outside_zero_to_one_or_a_negative_ridge_is_refused():
    for bad in ({"feature_share": 1.5}, {"feature_share": -0.1}, {"feature_ridge": -1.0}):
        with pytest.raises(ValueError, match="video.segment.feature_"):
            VideoSegConfig(**bad)
