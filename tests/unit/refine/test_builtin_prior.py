import dataclasses

import numpy as np
import pytest
from refine_scenes import iou, make_disc_scene

from pipeline.refine.image_labeller import (
    CamCRFConfig,
    ImageLabelConfig,
    background_score,
    label_image,
)
from pipeline.refine.objectness import ObjectnessConfig
from pipeline.refine.saliency import combine_saliency


def test_combine_saliency_picks_or_averages_the_cues():
    colour, builtin = np.full((2, 2), 0.2), np.full((2, 2), 0.6)
    assert combine_saliency(colour, None, "colour")[0, 0] == pytest.approx(0.2)
    assert combine_saliency(None, builtin, "builtin")[0, 0] == pytest.approx(0.6)
    assert combine_saliency(colour, builtin, "both")[0, 0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="built-in prior"):
        combine_saliency(colour, None, "both")


def test_unknown_sources_are_rejected():
    with pytest.raises(ValueError):
        ObjectnessConfig(saliency_source="depth")
    with pytest.raises(ValueError):
        CamCRFConfig(background="depth")


def test_background_score_from_the_prior():
    cams, prior = np.array([[[1.0, 0.0]]], np.float32), np.array([[0.25, 0.5]], np.float32)
    assert np.allclose(background_score(cams, CamCRFConfig()), [[0.0, 1.0]])
    builtin = background_score(cams, CamCRFConfig(background="builtin"), prior)
    assert np.allclose(builtin, [[0.75, 0.5]])
    assert np.allclose(
        background_score(cams, CamCRFConfig(background="both"), prior), [[0.375, 0.75]]
    )
    with pytest.raises(ValueError, match="built-in prior"):
        background_score(cams, CamCRFConfig(background="builtin"))


@pytest.mark.parametrize("method", ["cam_crf", "objectness"])
def test_the_prior_alone_finds_the_disc(method):
    image, disc = make_disc_scene()
    base = ImageLabelConfig(method=method)
    cfg = dataclasses.replace(
        base,
        cam_crf=dataclasses.replace(base.cam_crf, background="builtin"),
        objectness=dataclasses.replace(base.objectness, saliency_source="builtin"),
    )
    prior = disc[::4, ::4].astype(np.float32)  # coarse, as a backbone's stride-16 map would be
    cam = np.full((1, 16, 16), 0.5, np.float32)  # a CAM that cannot tell object from background
    labels = label_image(image, cam, [3], cfg, prior)
    assert labels.shape == disc.shape
    assert iou(labels == 3, disc) > 0.7
