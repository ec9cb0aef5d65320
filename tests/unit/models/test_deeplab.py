"""DeepLab model, ASPP, poly schedule, loss and the segmenter's batched augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.models.config import DeepLabConfig
from pipeline.models.deeplab import DeepLabV3, poly_lr_factor, segmentation_loss
from pipeline.models.heads import ASPP, ImagePooling, effective_rates
from pipeline.train.segmenter_data import augment_pair, letterbox

TINY = {"backbone": "resnet", "depth": 18, "width": 8, "aspp_channels": 16, "num_classes": 5}
TINY["head"] = "deeplabv3"  # this file tests the ASPP model (the default head is fastfcn)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(64, 64), (50, 77)])
def test_output_shape_equals_input_shape(output_stride, size):
    model = DeepLabV3(DeepLabConfig(output_stride=output_stride, **TINY)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


def test_backbone_resolution_follows_output_stride():
    for stride in (8, 16):
        model = DeepLabV3(DeepLabConfig(output_stride=stride, **TINY)).eval()
        with torch.no_grad():
            features = model.backbone(torch.randn(1, 3, 64, 64))
        assert features.shape[-1] == 64 // stride


def test_aspp_has_one_branch_per_rate_plus_1x1_and_pooling():
    model = DeepLabV3(DeepLabConfig(aspp_rates=(6, 12, 18), **TINY))
    branches = model.aspp.branches
    assert len(branches) == 5
    assert isinstance(branches[-1], ImagePooling)
    assert [b[0].dilation[0] for b in branches[1:4]] == [6, 12, 18]
    assert all(isinstance(b[1], torch.nn.BatchNorm2d) for b in branches[:4])


def test_rates_double_at_output_stride_8():
    resnet = DeepLabConfig(backbone="resnet", aspp_rates=(6, 12, 18))
    assert effective_rates(replace(resnet, output_stride=8)) == (12, 24, 36)
    assert effective_rates(replace(resnet, output_stride=16)) == (6, 12, 18)


def test_image_pooling_branch_is_constant_over_space():
    aspp = ASPP(8, 4, (2,), 0.0).eval()
    with torch.no_grad():
        pooled = aspp.branches[-1](torch.randn(1, 8, 5, 7))
    assert pooled.shape == (1, 4, 5, 7)
    assert torch.allclose(pooled, pooled[:, :, :1, :1].expand_as(pooled))


def test_invalid_output_stride_rejected():
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabConfig(backbone="resnet", output_stride=32)
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabConfig(backbone="efficientnet_lite0", output_stride=8)
    with pytest.raises(ValueError, match="backbone"):
        DeepLabConfig(backbone="vgg16")


def test_rates_halve_at_output_stride_32():
    cfg = DeepLabConfig(backbone="efficientnet_lite0", output_stride=32, aspp_rates=(6, 12, 18))
    assert effective_rates(cfg) == (3, 6, 9)


def test_poly_lr():
    assert poly_lr_factor(0, 100, 0.9) == 1.0
    assert poly_lr_factor(100, 100, 0.9) == 0.0
    assert poly_lr_factor(150, 100, 0.9) == 0.0
    assert poly_lr_factor(50, 100, 1.0) == pytest.approx(0.5)
    assert poly_lr_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    values = [poly_lr_factor(s, 10, 0.9) for s in range(11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_loss_ignores_255_and_survives_all_ignored():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([[[0, 255], [255, 255]]])
    loss = segmentation_loss(logits, target, 255)
    assert loss.item() == pytest.approx(np.log(3))
    empty = segmentation_loss(logits, torch.full((1, 2, 2), 255), 255)
    assert empty.item() == 0.0
    empty.backward()
    assert torch.isfinite(logits.grad).all()


def test_letterbox_pads_mask_with_ignore():
    image, mask = np.full((20, 40, 3), 9, np.uint8), np.ones((20, 40), np.uint8)
    out_image, out_mask = letterbox(image, mask, 16)
    assert out_image.shape == (16, 16, 3) and out_mask.shape == (16, 16)
    assert (out_mask[:8] == 1).all() and (out_mask[8:] == 255).all()
    assert (out_image[8:] == 0).all()


def test_augment_pair_shapes_labels_and_padding():
    gen = torch.Generator().manual_seed(0)
    images = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    masks = torch.full((6, 32, 32), 2, dtype=torch.uint8)
    x, y = augment_pair(images, masks, 24, (0.5, 2.0), 0.5, gen)
    assert x.shape == (6, 3, 24, 24) and x.dtype == torch.float32
    assert y.shape == (6, 24, 24) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= {2, 255}
    _, y_small = augment_pair(images, masks, 24, (0.5, 0.5), 0.0, torch.Generator().manual_seed(0))
    assert (y_small == 255).any()  # a half-size image leaves padding inside the crop


def test_augment_pair_flip_mirrors_labels():
    masks = torch.zeros(1, 32, 32, dtype=torch.uint8)
    masks[:, :, :16] = 1
    images = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    _, kept = augment_pair(images, masks, 32, (1.0, 1.0), 0.0, torch.Generator().manual_seed(0))
    _, flipped = augment_pair(images, masks, 32, (1.0, 1.0), 1.0, torch.Generator().manual_seed(0))
    assert (kept[0, :, :16] == 1).all() and (kept[0, :, 16:] == 0).all()
    assert torch.equal(flipped, kept.flip(-1))
