"""Pure parts of the classifier trainer: augmentation and average precision (no Ray)."""

import numpy as np
import pytest
import torch

from pipeline.train.augment import augment_batch, colour_jitter, eval_batch
from pipeline.train.classifier_loop import average_precision, per_class_ap
from pipeline.train.config import AugmentConfig


def test_augment_shapes_and_determinism():
    images = torch.randint(0, 256, (3, 40, 40, 3), dtype=torch.uint8)
    a = augment_batch(images, 32, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(images, 32, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment_batch(images, 32, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_identity_augmentation_is_a_plain_resize():
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=0.0, brightness=0.0,
                        contrast=0.0, saturation=0.0, grayscale=0.0)  # fmt: skip
    out = augment_batch(images, 32, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, eval_batch(images, 32), atol=1e-4)


def test_flip_only_mirrors():
    images = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=1.0, brightness=0.0,
                        contrast=0.0, saturation=0.0, grayscale=0.0)  # fmt: skip
    out = augment_batch(images, 16, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, eval_batch(images, 16).flip(-1), atol=1e-4)


def test_colour_jitter_stays_in_range():
    x = torch.rand(4, 3, 8, 8)
    out = colour_jitter(x.clone(), AugmentConfig(brightness=0.9, contrast=0.9, saturation=0.9),
                        torch.Generator().manual_seed(0))  # fmt: skip
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)


def test_average_precision():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 1, 1])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2
    )
    assert np.isnan(average_precision(np.array([0.5]), np.array([0])))


def test_per_class_ap_skips_absent_classes():
    targets = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.5, 0.8]], np.float32)
    assert per_class_ap(scores, targets, ("background", "a", "b", "c")) == {"a": 1.0, "c": 1.0}
