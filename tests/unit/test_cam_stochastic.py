import numpy as np
import pytest
import torch

from pipeline.cam import _pass_masks, _stochastic_maps, compute_cams
from pipeline.cam_config import CamConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig


@pytest.fixture(scope="module")
def model() -> CamClassifier:
    torch.manual_seed(0)
    return CamClassifier(ModelConfig(backbone="resnet", depth=18, width=8, num_classes=3)).eval()


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 80, 3), dtype=np.uint8)


def test_stochastic_maps_are_reproducible_for_a_seed(model):
    cfg = CamConfig(input_size=64, stochastic_passes=4)
    first, _ = compute_cams(model, [image()], [[1, 2]], cfg)
    again, _ = compute_cams(model, [image()], [[1, 2]], cfg)
    np.testing.assert_array_equal(first[0], again[0])


def test_stochastic_maps_differ_from_plain_maps(model):
    plain, _ = compute_cams(
        model, [image()], [[1, 2, 3]], CamConfig(input_size=64, stochastic_passes=0)
    )
    noisy, _ = compute_cams(
        model, [image()], [[1, 2, 3]], CamConfig(input_size=64, stochastic_passes=4)
    )
    assert plain[0].shape == noisy[0].shape
    assert not np.allclose(plain[0], noisy[0])


def test_dropping_nothing_gives_the_plain_maps(model):
    plain, scores = compute_cams(
        model, [image(1)], [[1, 3]], CamConfig(input_size=64, stochastic_passes=0)
    )
    same, same_scores = compute_cams(
        model,
        [image(1)],
        [[1, 3]],
        CamConfig(input_size=64, stochastic_passes=3, stochastic_dropout=0.0),
    )
    np.testing.assert_allclose(plain[0], same[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores[0], same_scores[0], rtol=1e-5)


@pytest.mark.parametrize("bad", [{"stochastic_passes": -1}, {"stochastic_dropout": 1.0}])
def test_bad_stochastic_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        CamConfig(**bad)


def test_shared_pass_masks_give_each_head_its_own_dropout_ensemble():
    # the passes mask the features once for all heads; each head's maps must equal the plain
    # per-head ensemble: mean over passes of ReLU(head(features * kept / keep))
    cfg = CamConfig(stochastic_passes=3, stochastic_dropout=0.5, seed=2)
    torch.manual_seed(1)
    heads = [torch.nn.Conv2d(6, 2, 1), torch.nn.Conv2d(6, 4, 1)]
    features = torch.rand(2, 6, 5, 7)
    masks = _pass_masks((6, 5, 7), features.device, cfg)
    got = _stochastic_maps(heads, features, masks)
    for head, maps in zip(heads, got, strict=True):
        expected = torch.zeros_like(maps)
        for index in range(cfg.stochastic_passes):
            generator = torch.Generator().manual_seed(cfg.seed * 7919 + index)
            kept = torch.rand((6, 5, 7), generator=generator) < 0.5
            expected += torch.relu(head(features * kept / 0.5)) / cfg.stochastic_passes
        torch.testing.assert_close(maps, expected)
