import numpy as np
from refine_scenes import iou, make_disc_scene

from pipeline.refine.crf import CRFConfig, crf_mask, dense_crf

# DeepLab's post-processing kernel at a 64 px working size
DEEPLAB_LIKE = CRFConfig(iterations=10, bilateral_sxy=8.0, bilateral_srgb=5.0, bilateral_compat=4.0)


def _noisy_probs(disc: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fg = np.clip(np.where(disc, 0.7, 0.3) + rng.normal(0, 0.25, disc.shape), 0.01, 0.99)
    return np.stack([1 - fg, fg]).astype(np.float32)


def test_output_is_a_distribution():
    image, disc = make_disc_scene()
    out = dense_crf(image, _noisy_probs(disc), CRFConfig())
    assert out.shape == (2, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-4)
    assert out.min() >= 0


def test_crf_cleans_noisy_probabilities_along_colour_edges():
    image, disc = make_disc_scene()
    probs = _noisy_probs(disc)
    before = iou(probs[1] > 0.5, disc)
    after = iou(dense_crf(image, probs, CRFConfig())[1] > 0.5, disc)
    assert after > 0.9 and after > before + 0.1


def test_single_label_and_size_mismatch():
    image, _ = make_disc_scene()
    one = dense_crf(image, np.ones((1, 64, 64), np.float32), CRFConfig())
    assert np.all(one == 1.0)
    try:
        dense_crf(image, np.ones((2, 32, 32), np.float32) / 2, CRFConfig())
    except ValueError:
        return
    raise AssertionError("expected ValueError for mismatched sizes")


def test_half_scale_fast_path_returns_full_size_posteriors_that_still_clean_edges():
    image, disc = make_disc_scene()
    probs = _noisy_probs(disc)
    fast = dense_crf(image, probs, CRFConfig(scale=0.5))
    assert fast.shape == probs.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast.sum(axis=0), 1.0, atol=1e-4)
    assert iou(fast[1] > 0.5, disc) > 0.85 > iou(probs[1] > 0.5, disc)


def test_scale_outside_zero_to_one_is_refused():
    for bad in (0.0, 1.5, -1.0):
        try:
            CRFConfig(scale=bad)
        except ValueError as error:
            assert "crf.scale" in str(error)
            continue
        raise AssertionError(f"scale {bad} accepted")


def test_crf_mask_snaps_blurred_logits_to_the_colour_edge_at_source_size():
    """crf_mask: logits (any size) over chosen label indices -> labels from those indices, at the
    image's size, the object's outline following its colour edge (DeepLab's post-processing)."""
    image, disc = make_disc_scene()
    image = np.repeat(np.repeat(image, 4, axis=0), 4, axis=1)  # 256 px: the CRF runs at side 64
    big_disc = np.repeat(np.repeat(disc, 4, axis=0), 4, axis=1)
    blurred = np.pad(disc, 4)[:64, 4:68] | disc  # the object's logits spill 4 px to one side
    logits = np.stack([np.where(blurred, -0.3, 0.3), np.where(blurred, 0.3, -0.3)]).astype(
        np.float32
    )
    labels = crf_mask(image, logits, np.array([0, 7], np.uint8), DEEPLAB_LIKE, side=64)
    assert labels.shape == (256, 256) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 7}
    plain = np.repeat(np.repeat(blurred, 4, axis=0), 4, axis=1)
    assert iou(labels == 7, big_disc) > iou(plain, big_disc) + 0.05
