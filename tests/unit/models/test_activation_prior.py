import numpy as np
import pytest
import torch

from pipeline.models.activation_prior import (
    captured_activations,
    foreground_prior,
    image_activations,
    mid_stage,
)
from pipeline.models.backbone import ResNet
from pipeline.models.efficientnet import EfficientNetLite


def _blob_activations(channels: int, size: int, sign: float) -> np.ndarray:
    acts = np.random.default_rng(0).normal(0, 0.05, (channels, size, size)).astype(np.float32)
    acts[:, size // 4 : size // 2, size // 4 : size // 2] += sign * 2.0
    return acts


def test_prior_is_high_where_both_stages_fire_and_in_unit_range():
    mid, late = _blob_activations(8, 16, 1.0), _blob_activations(32, 8, 1.0)
    prior = foreground_prior([mid, late], 64, 64)
    assert prior.shape == (64, 64) and prior.dtype == np.float32
    assert prior.min() == 0.0 and prior.max() == pytest.approx(1.0)
    assert prior[20:28, 20:28].mean() > 0.7 > 0.2 > prior[48:, 48:].mean()


def test_negative_linear_outputs_count_by_magnitude():
    prior = foreground_prior([_blob_activations(8, 16, -1.0)], 16, 16)
    assert prior[4:8, 4:8].mean() > 0.8 and prior[12:, 12:].mean() < 0.2


def test_flat_or_missing_activations_give_zeros():
    assert not foreground_prior([np.ones((4, 5, 5), np.float32)], 10, 10).any()
    assert foreground_prior([], 3, 4).shape == (3, 4)


def test_mid_stage_is_the_last_stride_16_stage():
    lite = EfficientNetLite("efficientnet_lite0")
    assert lite.stages()[mid_stage(lite)]._bn2.num_features == 112
    assert lite.stages()[mid_stage(lite) + 1]._bn2.num_features == 192
    assert mid_stage(ResNet(depth=18)) == 3
    with pytest.raises(ValueError):
        mid_stage(torch.nn.Conv2d(3, 3, 1))


def test_image_activations_shapes_and_hooks_removed():
    torch.manual_seed(0)
    backbone = EfficientNetLite("efficientnet_lite0")
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)
    mid, late = image_activations(backbone, image, short_side=64)
    assert mid.shape == (112, 4, 6) and late.shape == (1280, 2, 3)
    with captured_activations(backbone) as calls:
        backbone(torch.zeros(2, 3, 32, 32))
    assert len(calls) == 1 and calls[0][0].shape[:2] == (2, 112)
    backbone(torch.zeros(1, 3, 32, 32))
    assert len(calls) == 1
