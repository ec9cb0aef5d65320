"""The image GrabCut step with backbone features: a colour-alike object part the initialisation
left out joins the cut when the features mark it."""

import numpy as np

from pipeline.refine.appearance_cut import appearance_cut


def test_features_grow_the_cut_over_an_object_part_of_the_backgrounds_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (64, 64, 3)).astype(np.uint8)  # one colour everywhere
    obj = np.zeros((64, 64), bool)
    obj[16:48, 16:48] = True
    prob = np.full((64, 64), 0.25, np.float32)
    prob[16:48, 16:32] = 0.75  # the CRF found the left half only
    prob[24:40, 20:28] = 1.0
    prob[:4], prob[-4:] = 0.0, 0.0
    features = np.stack([obj.reshape(8, 8, 8, 8).mean(axis=(1, 3)), np.zeros((8, 8))])
    features = (features + rng.normal(0, 0.02, features.shape)).astype(np.float32)
    with_features = appearance_cut(image, prob, features, share=0.5, rounds=2)
    colour_only = appearance_cut(image, prob, features, share=0.0, rounds=2)
    iou = lambda cut: (cut & obj).sum() / (cut | obj).sum()  # noqa: E731
    assert iou(with_features) > 0.8 > iou(colour_only)
    assert with_features[prob >= 1.0].all() and not with_features[prob <= 0.0].any()
