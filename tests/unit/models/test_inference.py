"""models.inference.segment: one image -> class mask (torch only, no Ray)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.models.config import DeepLabConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.inference import segment

TINY = DeepLabConfig(backbone="resnet", width=8, aspp_channels=8, num_classes=3)


class ConstantModel(torch.nn.Module):
    """Logits favouring class `best` everywhere (at the input's size)."""

    def __init__(self, best: int, classes: int = 3):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.best, self.classes = best, classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, *x.shape[-2:])
        out[:, self.best] = 1.0
        return out


def test_segment_returns_source_resolution_uint8():
    model = DeepLabV3(TINY).eval()
    mask = segment(model, np.zeros((37, 53, 3), np.uint8), long_side=32)
    assert mask.shape == (37, 53) and mask.dtype == np.uint8 and mask.max() < 3


def test_segment_restricts_to_allowed_classes():
    image = np.zeros((10, 12, 3), np.uint8)
    assert (segment(ConstantModel(2), image, 16) == 2).all()
    assert (segment(ConstantModel(2), image, 16, allowed=(0, 1)) != 2).all()


def test_segment_upsamples_to_out_shape():
    mask = segment(DeepLabV3(TINY).eval(), np.zeros((20, 30, 3), np.uint8), 16, out_shape=(7, 9))
    assert mask.shape == (7, 9) and mask.dtype == np.uint8


def test_segment_adds_the_shift_before_the_argmax():
    image = np.zeros((10, 12, 3), np.uint8)
    assert (segment(ConstantModel(2), image, 16, shift=np.array([0.0, 1.5, 0.0])) == 1).all()
    assert (segment(ConstantModel(2), image, 16, shift=np.array([0.0, 0.5, 0.0])) == 2).all()
    shifted = segment(ConstantModel(2), image, 16, allowed=(0, 2), shift=np.array([0, 9.0, 0]))
    assert (shifted == 2).all()  # a shifted class that is not allowed stays out
