import pytest
import torch

from pipeline.models.imagenet_prior import (
    IMAGENET_CLASSES,
    imagenet_classes,
    membership,
    prior_head_weights,
    prior_probabilities,
)
from pipeline.schema import VOC_CLASSES


def test_every_voc_class_but_person_has_imagenet_members_in_range():
    for name in VOC_CLASSES[1:]:
        members = imagenet_classes(name)
        assert bool(members) == (name != "person"), name
        assert all(0 <= k < 1000 for k in members)
    assert len(imagenet_classes("dog")) == 118 and imagenet_classes("Airplane") == (404, 895, 908)


def test_no_imagenet_class_belongs_to_two_names():
    seen: dict[int, str] = {}
    for name, members in IMAGENET_CLASSES.items():
        for k in members:
            assert k not in seen, f"{k} in {seen.get(k)} and {name}"
            seen[k] = name


def test_prior_rows_are_member_means_and_unknown_names_get_zeros():
    fc = torch.randn(1000, 6)
    rows, has = prior_head_weights(fc, ["background", "horse", "person", "ball"])
    assert rows.shape == (3, 6) and has == [True, False, False]
    assert torch.allclose(rows[0], fc[[339, 603]].mean(0))
    assert not rows[1:].any()


def test_prior_probability_is_the_softmax_mass_of_the_members():
    fc, bias = torch.zeros(1000, 2), torch.zeros(1000)
    fc[671, 0] = 10.0  # feature 0 fires "mountain bike"
    pooled = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    probs = prior_probabilities(pooled, fc, bias, membership(["background", "bicycle", "dog"]))
    assert probs.shape == (2, 2)
    assert probs[0, 0] > 0.9 and probs[0, 1] < 0.01
    assert probs[1, 0] == pytest.approx(2 / 1000) and probs[1, 1] == pytest.approx(118 / 1000)


def test_a_head_that_is_not_imagenet_is_refused():
    with pytest.raises(ValueError, match="1000"):
        prior_head_weights(torch.zeros(20, 6), ["background", "dog"])
