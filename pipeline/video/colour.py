"""Per-shot colour models: foreground and background GMMs fitted on confident seed pixels,
tabulated as a log-likelihood-ratio lookup table over quantised RGB (cheap to apply to a shot)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ColourConfig:
    fg_components: int = 5  # GMM components for the object (GrabCut uses 5)
    bg_components: int = 8  # GMM components for the background (more varied than the object)
    max_samples: int = 20000  # seed pixels per model; more adds time, not accuracy
    iterations: int = 8  # EM steps after k-means initialisation
    lut_bits: int = 5  # quantisation of each RGB channel in the lookup table (32 levels)
    min_seeds: int = 200  # fewer seed pixels on either side: no colour model for the shot
    llr_clip: float = (
        6.0  # |log-likelihood ratio| cap (natural log): one colour never decides alone
    )
    seed: int = 0  # sampling seed (results are deterministic)


@dataclass(frozen=True)
class Gmm:
    """weights (K,), means (K,3), covs (K,3,3), all float64."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray


def fit_gmm(samples: np.ndarray, k: int, iterations: int) -> Gmm:
    """samples Nx3 float -> full-covariance GMM (k-means init, then EM)."""
    data = samples.astype(np.float32)
    k = max(1, min(k, len(data) // 10))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, labels, _ = cv2.kmeans(data, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    moments = _moments(data.astype(np.float64))
    gmm = _m_step(moments, np.eye(k)[labels.ravel()].T)
    for _ in range(iterations):
        log_p = _component_loglik(moments, gmm)
        resp = np.exp(log_p - log_p.max(axis=0))
        resp /= resp.sum(axis=0)
        gmm = _m_step(moments, resp)
    return gmm


# Both EM steps are one matrix product with the samples' moments (N x 10: the six products
# x_i x_j, the three x_i, and 1): a Gaussian's log-density is linear in them, and so are the
# weighted sums the M-step needs. Responsibilities are K x N, so the reductions over the few
# components run along whole rows.
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _moments(x: np.ndarray) -> np.ndarray:
    """Nx3 float64 -> Nx10 [x_i x_j for _PAIRS, x_0, x_1, x_2, 1]."""
    products = [x[:, i] * x[:, j] for i, j in _PAIRS]
    return np.stack([*products, x[:, 0], x[:, 1], x[:, 2], np.ones(len(x))], axis=1)


def _m_step(moments: np.ndarray, resp: np.ndarray) -> Gmm:
    """moments Nx10, resp KxN -> the weighted maximum-likelihood mixture."""
    sums = resp @ moments  # K x 10
    mass = sums[:, 9] + 1e-9
    means = sums[:, 6:9] / mass[:, None]
    second = np.empty((len(mass), 3, 3))
    for col, (i, j) in enumerate(_PAIRS):
        second[:, i, j] = second[:, j, i] = sums[:, col] / mass
    covs = second - means[:, :, None] * means[:, None, :]
    covs += np.eye(3)[None] * 4.0  # regularise: a few grey levels of noise in every direction
    return Gmm(mass / mass.sum(), means, covs)


def _component_loglik(moments: np.ndarray, gmm: Gmm) -> np.ndarray:
    """moments Nx10 -> KxN log(weight_k * N(x | mean_k, cov_k))."""
    inv = np.linalg.inv(gmm.covs)
    _, logdet = np.linalg.slogdet(gmm.covs)
    pull = np.einsum("kij,kj->ki", inv, gmm.means)  # A m
    coef = np.empty((len(inv), 10))
    for col, (i, j) in enumerate(_PAIRS):
        coef[:, col] = inv[:, i, j] * (1 if i == j else 2)
    coef[:, 6:9] = -2 * pull
    coef[:, 9] = np.einsum("ki,ki->k", gmm.means, pull)
    maha = coef @ moments.T
    return np.log(gmm.weights)[:, None] - 0.5 * (maha + logdet[:, None] + 3 * np.log(2 * np.pi))


def gmm_loglik(x: np.ndarray, gmm: Gmm) -> np.ndarray:
    """Nx3 -> N log-likelihoods under the mixture."""
    comp = _component_loglik(_moments(x.astype(np.float64)), gmm)
    top = comp.max(axis=0)
    return top + np.log(np.exp(comp - top).sum(axis=0))


def colour_lut(fg: np.ndarray, bg: np.ndarray, cfg: ColourConfig) -> np.ndarray | None:
    """fg, bg: Nx3 uint8 RGB seed pixels -> LxLxL float32 log p(c|fg) - log p(c|bg), clipped,
    with L = 2**lut_bits; None when either side has fewer than min_seeds pixels."""
    if min(len(fg), len(bg)) < cfg.min_seeds:
        return None
    rng = np.random.default_rng(cfg.seed)
    fg = fg[rng.permutation(len(fg))[: cfg.max_samples]]
    bg = bg[rng.permutation(len(bg))[: cfg.max_samples]]
    fg_gmm = fit_gmm(fg, cfg.fg_components, cfg.iterations)
    bg_gmm = fit_gmm(bg, cfg.bg_components, cfg.iterations)
    levels = 1 << cfg.lut_bits
    centres = (np.arange(levels) + 0.5) * (256 / levels)
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    llr = gmm_loglik(grid, fg_gmm) - gmm_loglik(grid, bg_gmm)
    return (
        np.clip(llr, -cfg.llr_clip, cfg.llr_clip).reshape(levels, levels, levels).astype(np.float32)
    )


def apply_lut(images: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """images ...x3 uint8 RGB -> ... float32 looked-up log-likelihood ratios."""
    shift = 8 - int(np.log2(lut.shape[0]))
    q = images >> shift
    return lut[q[..., 0], q[..., 1], q[..., 2]]


def colour_llr(
    images: np.ndarray, fg_seed: np.ndarray, bg_seed: np.ndarray, cfg: ColourConfig
) -> np.ndarray:
    """images ...x3 uint8 RGB, seed masks of their shape without the channel -> ... float32
    colour log-likelihood ratio from models fitted on the seeds (zeros when too few seeds)."""
    lut = colour_lut(images[fg_seed], images[bg_seed], cfg)
    if lut is None:
        return np.zeros(fg_seed.shape, np.float32)
    return apply_lut(images, lut)
