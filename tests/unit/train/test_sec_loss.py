"""SEC's losses (pipeline.train.sec_loss) on tiny tensors, no Ray."""

import numpy as np
import pytest
import torch

from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.classifier import normalize
from pipeline.refine.crf import CRFConfig
from pipeline.train.sec_loss import (
    constrain_loss,
    crf_images,
    crf_of_prediction,
    expansion_loss,
    gwrp,
    pooled_probs,
    sec_terms,
)

STATS = (IMAGENET_MEAN, IMAGENET_STD)


def _scores(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(seed))


def test_gwrp_is_the_max_at_decay_0_and_the_mean_at_decay_1():
    scores = _scores()
    assert torch.allclose(gwrp(scores, 0.0), scores.flatten(2).max(dim=2).values)
    assert torch.allclose(gwrp(scores, 1.0), scores.flatten(2).mean(dim=2))


def test_gwrp_lies_between_mean_and_max_and_takes_a_decay_per_class():
    scores = _scores(1)
    pooled = gwrp(scores, torch.tensor([0.0, 0.9, 1.0]))
    flat = scores.flatten(2)
    assert torch.allclose(pooled[:, 0], flat[:, 0].max(dim=1).values)
    assert torch.allclose(pooled[:, 2], flat[:, 2].mean(dim=1))
    assert (pooled[:, 1] <= flat[:, 1].max(dim=1).values + 1e-6).all()
    assert (pooled[:, 1] >= flat[:, 1].mean(dim=1) - 1e-6).all()


def _two_class_probs(fg_share: float, size: int = 10) -> torch.Tensor:
    """(1, 3, size, size): class 1 certain on the first fg_share of rows, background elsewhere."""
    probs = torch.zeros(1, 3, size, size)
    rows = round(fg_share * size)
    probs[0, 1, :rows] = 1.0
    probs[0, 0, rows:] = 1.0
    return probs


def test_expansion_loss_is_near_zero_when_the_prediction_matches_the_classes():
    present = torch.tensor([[True, True, False]])
    loss = expansion_loss(_two_class_probs(0.5), present, fg_decay=0.0, bg_decay=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-4)


def test_expansion_loss_punishes_a_missing_class_and_an_absent_one_predicted():
    present = torch.tensor([[True, True, False]])
    right = expansion_loss(_two_class_probs(0.5), present)
    missing = expansion_loss(_two_class_probs(0.0), present)  # class 1 nowhere
    wrong = torch.tensor([[True, False, True]])  # class 2 said present, class 1 absent
    assert missing > right + 1
    assert expansion_loss(_two_class_probs(0.5), wrong) > right + 1


def test_expansion_rewards_a_larger_object_through_the_rank_weights():
    present = torch.tensor([[True, True, False]])
    # background pooled by its max (decay 0) so that only the object's term differs
    small = expansion_loss(_two_class_probs(0.1), present, fg_decay=0.9, bg_decay=0.0)
    large = expansion_loss(_two_class_probs(0.5), present, fg_decay=0.9, bg_decay=0.0)
    assert large < small


def test_constrain_loss_is_zero_when_the_crf_agrees_and_positive_otherwise():
    probs = torch.softmax(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)), 1)
    assert constrain_loss(probs, probs).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.softmax(torch.randn(1, 3, 4, 4), 1)
    assert constrain_loss(probs, other).item() > 0


def test_gradients_flow_through_expansion_and_constrain():
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    probs = torch.softmax(logits, dim=1)
    target = torch.softmax(torch.randn(1, 3, 8, 8), dim=1)
    loss = expansion_loss(probs, torch.tensor([[True, True, False]])) + constrain_loss(
        probs, target
    )
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_pooled_probs_still_sum_to_one():
    probs = torch.softmax(torch.randn(2, 3, 8, 8), dim=1)
    pooled = pooled_probs(probs, 4)
    assert pooled.shape == (2, 3, 2, 2)
    assert torch.allclose(pooled.sum(dim=1), torch.ones(2, 2, 2))


def test_crf_images_undo_the_normalisation():
    images = torch.randint(0, 256, (1, 4, 4, 3), dtype=torch.uint8)
    back = crf_images(normalize(images, STATS), STATS, 1)
    assert np.abs(back.astype(int) - images.numpy().astype(int)).max() <= 1


def test_crf_of_a_confident_flat_prediction_keeps_it():
    image = np.zeros((1, 6, 6, 3), np.uint8)
    probs = torch.zeros(1, 2, 6, 6)
    probs[0, 0] = 0.99
    probs[0, 1] = 0.01
    refined = crf_of_prediction(image, probs, CRFConfig(iterations=3), 1.0)
    assert refined.shape == probs.shape
    assert (refined[0, 0] > 0.9).all()


def test_sec_terms_run_end_to_end_with_a_gradient():
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    present = torch.tensor([[True, True, False], [True, False, True]])
    terms = sec_terms(logits, normalize(images, STATS), present, STATS, stride=4)
    assert set(terms) == {"expand", "constrain"}
    (terms["expand"] + terms["constrain"]).backward()
    assert logits.grad.abs().sum() > 0
