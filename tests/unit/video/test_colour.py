"""Per-shot colour models: the EM fit, the mixture likelihood and the lookup table."""

import numpy as np
import pytest

from pipeline.video.colour import ColourConfig, Gmm, colour_lut, fit_gmm, gmm_loglik

REGULARISER = 4.0  # fit_gmm adds this to every covariance's diagonal


def _two_blobs(rng, n=(6000, 3000)):
    means = np.array([[60.0, 80.0, 200.0], [200.0, 90.0, 40.0]])
    covs = np.array([np.diag([90.0, 40.0, 60.0]), [[120, 50, 0], [50, 80, 0], [0, 0, 30]]])
    parts = [rng.multivariate_normal(m, c, size=k) for m, c, k in zip(means, covs, n, strict=True)]
    return np.concatenate(parts), means, covs


def test_fit_recovers_two_gaussians():
    rng = np.random.default_rng(0)
    samples, means, covs = _two_blobs(rng)
    gmm = fit_gmm(samples, k=2, iterations=8)
    order = np.argsort(gmm.means[:, 0])
    np.testing.assert_allclose(gmm.means[order], means, atol=1.0)
    np.testing.assert_allclose(gmm.covs[order], covs + REGULARISER * np.eye(3), rtol=0.1, atol=5)
    np.testing.assert_allclose(gmm.weights[order], [2 / 3, 1 / 3], atol=0.01)


def _reference_loglik(x: np.ndarray, gmm: Gmm) -> np.ndarray:
    """log sum_k w_k N(x | m_k, C_k), point by point, straight from the density's formula."""
    out = []
    for point in x:
        total = 0.0
        for w, m, c in zip(gmm.weights, gmm.means, gmm.covs, strict=True):
            d = point - m
            norm = np.sqrt((2 * np.pi) ** 3 * np.linalg.det(c))
            total += w * np.exp(-0.5 * d @ np.linalg.solve(c, d)) / norm
        out.append(np.log(total))
    return np.array(out)


def test_mixture_likelihood_matches_the_density_formula():
    rng = np.random.default_rng(1)
    samples, _, _ = _two_blobs(rng)
    gmm = fit_gmm(samples, k=3, iterations=4)
    points = rng.uniform(0, 255, size=(50, 3))
    points[:10] = samples[:10]
    np.testing.assert_allclose(gmm_loglik(points, gmm), _reference_loglik(points, gmm), atol=1e-6)


def test_lookup_table_favours_each_side_on_its_own_colours():
    rng = np.random.default_rng(2)
    red = np.clip(rng.normal([200, 40, 40], 12, (3000, 3)), 0, 255).astype(np.uint8)
    green = np.clip(rng.normal([40, 180, 60], 12, (3000, 3)), 0, 255).astype(np.uint8)
    cfg = ColourConfig()
    lut = colour_lut(red, green, cfg)
    q = 8 - cfg.lut_bits
    assert lut[200 >> q, 40 >> q, 40 >> q] == pytest.approx(cfg.llr_clip)
    assert lut[40 >> q, 180 >> q, 60 >> q] == pytest.approx(-cfg.llr_clip)
    assert np.abs(lut).max() <= cfg.llr_clip


def test_too_few_seeds_give_no_table():
    cfg = ColourConfig()
    few = np.zeros((cfg.min_seeds - 1, 3), np.uint8)
    many = np.full((cfg.min_seeds * 2, 3), 200, np.uint8)
    assert colour_lut(few, many, cfg) is None
    assert colour_lut(many, few, cfg) is None
