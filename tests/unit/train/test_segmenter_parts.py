"""Segmenter training pieces without Ray: the cache decision, the weighted loss, the config."""

import pytest
import torch

from pipeline.models.deeplab import segmentation_loss
from pipeline.train.config import SegmenterTrainConfig
from pipeline.train.segmenter_data import decoded_bytes, should_cache

GB = 1024**3


def test_decoded_bytes_counts_image_and_mask():
    assert decoded_bytes(424, 320) == 424 * 320 * 320 * 4


@pytest.mark.parametrize(
    ("setting", "store", "expected"),
    [
        ("auto", 4 * GB, True),  # 174 MB in a quarter of 4 GB
        ("auto", 0.5 * GB, False),  # not in a quarter of 512 MB
        ("auto", None, False),  # no object store reported: stream
        (True, 0.1 * GB, True),
        (False, 100 * GB, False),
    ],
)
def test_should_cache_resolves_auto_from_the_cluster(setting, store, expected):
    resources = {"CPU": 2.0} if store is None else {"object_store_memory": store}
    assert should_cache(setting, 424, 320, resources) is expected


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 4, generator=gen, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    target[0, 0] = 255
    return logits, target


def test_weighted_loss_without_weights_is_the_plain_loss():
    logits, target = _batch()
    plain = segmentation_loss(logits, target, 255)
    assert segmentation_loss(logits, target, 255, None) == plain


def test_uniform_weights_equal_the_plain_loss():
    logits, target = _batch()
    weighted = segmentation_loss(logits, target, 255, torch.full((3,), 2.5))
    assert weighted.item() == pytest.approx(segmentation_loss(logits, target, 255).item())


def test_weights_match_torch_weighted_mean():
    logits, target = _batch(1)
    weight = torch.tensor([0.2, 1.0, 5.0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=255)
    got = segmentation_loss(logits, target, 255, weight)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_offset_is_added_inside_the_loss():
    logits, target = _batch(2)
    offset = torch.log(torch.tensor([0.9, 0.09, 0.01]))
    expected = torch.nn.functional.cross_entropy(
        logits + offset.view(1, -1, 1, 1), target, ignore_index=255
    )
    got = segmentation_loss(logits, target, 255, logit_offset=offset)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_adjusted_loss_asks_more_of_rare_classes():
    # a pixel of the rare class 2 predicted with uniform logits: the rare class's negative offset
    # makes the adjusted loss larger, so training pushes its raw logit higher than plain CE does
    logits = torch.zeros(1, 3, 1, 1)
    target = torch.full((1, 1, 1), 2)
    offset = torch.log(torch.tensor([0.9, 0.09, 0.01]))
    assert segmentation_loss(logits, target, 255, logit_offset=offset) > segmentation_loss(
        logits, target, 255
    )


def test_all_ignored_gives_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    loss = segmentation_loss(logits, target, 255, torch.ones(3))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_config_defaults_and_validation():
    cfg = SegmenterTrainConfig()
    assert (cfg.class_weighting, cfg.cache_decoded, cfg.max_class_weight) == (
        "none",  # median_frequency measured worse on dev (docs/quality.md)
        "auto",
        10.0,
    )
    with pytest.raises(ValueError, match="class_weighting"):
        SegmenterTrainConfig(class_weighting="inverse")
    with pytest.raises(ValueError, match="cache_decoded"):
        SegmenterTrainConfig(cache_decoded="yes")
    with pytest.raises(ValueError, match="max_class_weight"):
        SegmenterTrainConfig(max_class_weight=0.5)


def test_training_masks_reads_every_mask_and_skips_unreadable(tmp_path):
    import json

    import cv2
    import numpy as np

    from pipeline.train.segmenter_data import training_masks

    good = tmp_path / "a.png"
    cv2.imwrite(str(good), np.full((3, 4), 2, np.uint8))
    sources = [
        {"masks": json.dumps([str(good), str(tmp_path / "missing.png")])},
        {"masks": json.dumps([str(good)])},
    ]
    masks = list(training_masks(sources))
    assert len(masks) == 2 and masks[0].shape == (3, 4) and masks[0].dtype == np.uint8
