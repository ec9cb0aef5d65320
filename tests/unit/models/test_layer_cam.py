import numpy as np
import pytest
import torch
from torch import nn

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.models.backbone import ResNet
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig
from pipeline.models.efficientnet import EfficientNetLite
from pipeline.models.layer_cam import fuse_with_cams, layer_cam_maps, peak_normalised


@pytest.mark.parametrize(
    "backbone", [lambda: ResNet(18, 8, 32), lambda: EfficientNetLite("efficientnet_lite0")]
)
def test_forward_splits_at_the_stride16_level_into_the_same_forward(backbone):
    torch.manual_seed(0)
    net = backbone().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        middle = net.forward_to_level(x, 2)
        assert middle.shape[-2:] == (4, 6)  # stride 16
        assert torch.allclose(net.forward_from_level(middle, 2), net(x), atol=1e-5)
        stride8 = net.forward_to_level(x, 1)
        assert stride8.shape[-2:] == (8, 12)
        assert torch.allclose(net.forward_between_levels(stride8, 1, 2), middle, atol=1e-5)


class _ToyBackbone(nn.Module):
    """Stride-16 'features' = the input's first 2 channels; the head level pools them 2x."""

    def forward_to_level(self, x, level):
        return x[:, :2]

    def forward_from_level(self, x, level):
        return nn.functional.avg_pool2d(x, 2)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _ToyBackbone()
        self.classifier = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():  # class 0 reads channel 0, class 1 channel 1
            self.classifier.weight.copy_(torch.eye(2)[:, :, None, None])


def test_layer_cam_is_the_activation_its_class_score_grows_with_at_the_finer_grid():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 1, 6] = 3.0  # class 0's evidence: one stride-16 cell, not aligned to the 2x pooling
    x[0, 1, 5, 2] = 2.0
    (maps,) = layer_cam_maps(_Toy(), None, None, x[:, :2], [[0, 1]], flip=False)
    assert maps.shape == (2, 8, 8)
    assert maps[0].argmax() == 1 * 8 + 6 and maps[1].argmax() == 5 * 8 + 2
    assert maps[0, 5, 2] == 0 and maps[1, 1, 6] == 0  # each class sees only its own evidence
    assert torch.isclose(maps.amax(), torch.tensor(1.0))


def test_flipped_twins_are_flipped_back_before_they_are_summed():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 2, 1] = 1.0
    both = torch.cat([x, x.flip(-1)])
    (maps,) = layer_cam_maps(_Toy(), None, None, both[:, :2], [[0]], flip=True)
    assert maps.shape == (1, 8, 8) and maps[0].argmax() == 2 * 8 + 1


def test_prior_maps_join_only_tags_that_have_a_prior():
    x = torch.zeros(2, 3, 8, 8)
    x[:, 0, 1, 1] = 1.0  # the learned head's class-0 evidence
    x[:, 1, 6, 6] = 1.0  # what the 'prior' head (reading channel 1 for every class) sees

    def prior(features):
        return features[:, 1:2].repeat(1, 2, 1, 1)

    has = torch.tensor([True, False])
    with_prior, without = layer_cam_maps(_Toy(), prior, has, x[:, :2], [[0], [1]], flip=False)
    assert with_prior[0, 1, 1] > 0 and with_prior[0, 6, 6] > 0  # class 0: both heads
    assert without[0, 1, 1] == 0 and without[0, 6, 6] > 0  # class 1: its learned head only


def test_fusion_is_the_mean_of_the_upsampled_cam_and_the_layer_map_peak_normalised():
    cams = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    layer = torch.zeros(1, 4, 4)
    layer[0, 3, 3] = 1.0
    fused = fuse_with_cams(cams, layer)
    assert fused.shape == (1, 4, 4) and torch.isclose(fused.amax(), torch.tensor(1.0))
    assert fused[0, 0, 0] > fused[0, 0, 3] and fused[0, 3, 3] > fused[0, 0, 3]
    assert fuse_with_cams(torch.zeros(0, 2, 2), torch.zeros(0, 4, 4)).shape == (0, 4, 4)
    assert torch.equal(peak_normalised(torch.zeros(1, 2, 2)), torch.zeros(1, 2, 2))


def test_compute_cams_gives_stride16_maps_with_layer_cam_and_stride32_without():
    torch.manual_seed(0)
    model = CamClassifier(
        ModelConfig(backbone="resnet", depth=18, width=8, output_stride=32, num_classes=3)
    ).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(std=1.0)
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    cfg = CamConfig(input_size=64, stochastic_passes=0)
    (fine,), _ = compute_cams(model, [image], [[1, 3]], cfg)
    (coarse,), _ = compute_cams(
        model, [image], [[1, 3]], CamConfig(**{**cfg.__dict__, "layer_cam": False})
    )
    assert fine.shape == (2, 4, 8) and coarse.shape == (2, 2, 4)
    assert fine.dtype == np.float32 and fine.min() >= 0
    assert np.allclose(fine.reshape(2, -1).max(axis=1), 1.0, atol=1e-5)


def test_layer_cam_runs_its_own_scale1_pass_when_the_scales_leave_1_out():
    torch.manual_seed(0)
    model = CamClassifier(
        ModelConfig(backbone="resnet", depth=18, width=8, output_stride=32, num_classes=3)
    ).eval()
    image = np.random.default_rng(1).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    cfg = CamConfig(input_size=64, stochastic_passes=0)
    (with_one,), _ = compute_cams(model, [image], [[2]], cfg)
    (without,), _ = compute_cams(
        model, [image], [[2]], CamConfig(**{**cfg.__dict__, "scales": (0.5,)})
    )
    assert with_one.shape == without.shape == (1, 4, 8)
    assert np.isclose(without.max(), 1.0, atol=1e-5)
