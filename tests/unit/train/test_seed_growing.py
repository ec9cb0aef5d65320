"""DSRG seed growing in the loop (pipeline.train.seed_growing) on tiny label maps, no Ray."""

import torch

from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.classifier import normalize
from pipeline.train.seed_growing import (
    candidate_classes,
    grow_seeds,
    padding_pixels,
    present_classes,
)

I = 255  # noqa: E741 - the ignore value, short so the maps below stay readable


def _probs(labels: list[list[int]], num_classes: int, confidence: float) -> torch.Tensor:
    """(1, C, H, W) softmax-like map: `confidence` on each pixel's class, the rest spread."""
    index = torch.tensor(labels)[None]
    rest = (1 - confidence) / (num_classes - 1)
    probs = torch.full((1, num_classes, *index.shape[1:]), rest)
    return probs.scatter(1, index[:, None], confidence)


def _target(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)[None]


def test_present_classes_reads_the_mask_and_always_holds_background():
    target = _target([[2, 2, I], [I, I, I]])
    assert present_classes(target, 4).tolist() == [[True, False, True, False]]


def test_a_region_grows_through_confident_ignored_pixels_until_it_stops():
    target = _target([[1, I, I, I, I]])
    probs = _probs([[1, 1, 1, 0, 1]], 2, 0.95)  # the 4th pixel is background: the chain breaks
    grown = grow_seeds(target, probs, torch.tensor([[True, True]]), 0.85, 0.99)
    assert grown.tolist() == [[[1, 1, 1, I, I]]]  # background at 0.95 is below its 0.99


def test_background_needs_its_own_higher_threshold():
    target = _target([[0, I, I]])
    allowed = torch.tensor([[True, True]])
    assert grow_seeds(target, _probs([[0, 0, 0]], 2, 0.95), allowed).tolist() == [[[0, I, I]]]
    assert grow_seeds(target, _probs([[0, 0, 0]], 2, 0.995), allowed).tolist() == [[[0, 0, 0]]]


def test_labelled_pixels_never_change_and_unlabelled_classes_do_not_appear():
    target = _target([[1, 0, I], [I, I, I]])
    probs = _probs([[2, 2, 2], [2, 2, 2]], 3, 0.99)  # the net is sure of class 2 everywhere
    grown = grow_seeds(target, probs, present_classes(target, 3))  # class 2 not allowed
    assert grown[0, 0, :2].tolist() == [1, 0]
    assert (grown != 2).all()


def test_growth_is_eight_connected_and_needs_an_adjacent_region():
    target = _target([[1, I, I], [I, I, I], [I, I, I]])
    probs = _probs([[1, 0, 0], [0, 1, 0], [0, 0, 1]], 2, 0.9)  # a diagonal of class 1
    grown = grow_seeds(target, probs, torch.tensor([[True, True]]))
    assert grown.tolist() == [[[1, I, I], [I, 1, I], [I, I, 1]]]


def test_growable_and_max_steps_bound_the_growth():
    target = _target([[1, I, I, I]])
    probs = _probs([[1, 1, 1, 1]], 2, 0.9)
    allowed = torch.tensor([[True, True]])
    one_step = grow_seeds(target, probs, allowed, max_steps=1)
    assert one_step.tolist() == [[[1, 1, I, I]]]
    fenced = grow_seeds(target, probs, allowed, growable=_target([[1, 1, 0, 1]]).bool())
    assert fenced.tolist() == [[[1, 1, I, I]]]


def test_candidate_classes_pick_the_best_allowed_class_above_its_threshold():
    probs = torch.tensor([0.05, 0.5, 0.45]).view(1, 3, 1, 1)
    only_two = torch.tensor([[True, False, True]])
    assert candidate_classes(probs, only_two, 0.4, 0.99).item() == 2
    assert candidate_classes(probs, only_two, 0.85, 0.99).item() == -1


def test_padding_pixels_find_the_crop_and_letterbox_padding():
    images = torch.full((1, 2, 3, 3), 120, dtype=torch.uint8)
    images[0, 1, 2] = 0  # letterbox black
    x = normalize(images, (IMAGENET_MEAN, IMAGENET_STD))
    x[0, :, 0, 0] = 0.0  # the crop's zero padding
    padding = padding_pixels(x, (IMAGENET_MEAN, IMAGENET_STD))
    assert padding.tolist() == [[[True, False, False], [False, False, True]]]
