"""GrabCut with the backbone's features: the image route's growth step as a min-cut whose unary is
the CRF's initialisation as log-odds plus the mean of the colour models' and the stride-8 feature
discriminant's log-likelihood ratios (the video cut's appearance term, pipeline/video), refitted
on each round's cut. OpenCV's GrabCut judges colour alone; a horse's legs and a person's clothes
share the body's features more often than its colour."""

from __future__ import annotations

import numpy as np

from pipeline.video.appearance import DEFAULT_RIDGE, feature_llr
from pipeline.video.colour import ColourConfig, colour_llr
from pipeline.video.graph_cut import CutConfig, cut_volume

SURE = 50.0  # log-odds of the sure pixels: no appearance can flip them
PROBABLE = float(np.log(3.0))  # logit(0.75): GrabCut's probable foreground / background


def appearance_cut(
    image: np.ndarray,
    prob: np.ndarray,
    features: np.ndarray,
    share: float,
    rounds: int,
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """image HxWx3 uint8 RGB; prob HxW float32 GrabCut initialisation (1 sure foreground, 0 sure
    background, > 0.5 probable foreground, else probable background); features C x h x w float
    (any grid covering the image); share: the features' part of the appearance term -> HxW bool
    foreground after ``rounds`` cuts."""
    sure_fg, sure_bg = prob >= 1.0, prob <= 0.0
    prior = np.where(prob > 0.5, PROBABLE, -PROBABLE).astype(np.float32)
    prior[sure_fg], prior[sure_bg] = SURE, -SURE
    fg_seed, bg_seed = prob > 0.5, prob <= 0.5
    colour_cfg = ColourConfig()
    cut = fg_seed
    for _ in range(rounds):
        if fg_seed.sum() < colour_cfg.min_seeds or bg_seed.sum() < colour_cfg.min_seeds:
            break
        colour = colour_llr(image, fg_seed, bg_seed, colour_cfg)
        learned = feature_llr(features[None], fg_seed[None], bg_seed[None], ridge, colour_cfg)
        term = colour if learned is None else (1 - share) * colour + share * learned[0]
        unary = np.where(sure_fg | sure_bg, prior, prior + term).astype(np.float32)
        cut = cut_volume(unary[None], image[None], None, CutConfig())[0]
        fg_seed, bg_seed = cut & ~sure_bg, ~cut & ~sure_fg
    return cut
