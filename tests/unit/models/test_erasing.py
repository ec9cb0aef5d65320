"""Adversarial erasing: the pure core, the extra heads in checkpoints and CAMs, the round parts."""

import numpy as np
import pytest
import torch

from pipeline.cam import compute_cams, compute_round_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier, save_model
from pipeline.models.classifier import CamClassifier, extra_head_count
from pipeline.models.config import ModelConfig
from pipeline.models.erasing import (
    FILL_COLOUR,
    erase,
    erase_mask,
    merge_round_maps,
    object_gone,
    resize_maps,
)
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.erasing_rounds import HeadRows, heldout_map, tag_lists

SMALL = ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16, num_classes=3)
# the rounds' merge alone, without the LayerCAM averaged in
CAMS = CamConfig(input_size=64, flip=False, stochastic_passes=0, layer_cam=False)


def _image(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_erase_covers_exactly_the_pixels_above_threshold_in_any_map():
    image = _image()
    cams = np.zeros((2, 6, 5), np.float32)
    cams[0, 1, 1], cams[0, 2, 2] = 0.9, 0.8  # 0.8 is not above 0.8
    cams[1, 4, 3] = 1.0
    out = erase(image, cams, threshold=0.8)
    erased = np.zeros((6, 5), bool)
    erased[1, 1] = erased[4, 3] = True
    assert (out[erased] == FILL_COLOUR).all()
    assert (out[~erased] == image[~erased]).all()
    assert out.dtype == np.uint8 and out is not image
    assert (image[1, 1] != FILL_COLOUR).any()  # the input is left alone


def test_erase_without_tags_changes_nothing_and_checks_sizes():
    image = _image()
    assert (erase(image, np.zeros((0, 6, 5), np.float32), 0.5) == image).all()
    assert not erase_mask(np.zeros((0, 6, 5)), 0.5).any()
    with pytest.raises(ValueError, match="differ in size"):
        erase(image, np.zeros((1, 3, 3), np.float32), 0.5)


def test_resize_maps_keeps_values_and_tag_count():
    maps = np.stack([np.full((3, 4), 0.25), np.eye(3, 4)]).astype(np.float32)
    big = resize_maps(maps, (6, 8))
    assert big.shape == (2, 6, 8) and big.dtype == np.float32
    assert np.allclose(big[0], 0.25)
    assert resize_maps(np.zeros((0, 3, 4)), (6, 8)).shape == (0, 6, 8)


def test_merge_round_maps_is_the_pixelwise_max():
    a = np.array([[[0.1, 1.0], [0.0, 0.5]]], np.float32)
    b = np.array([[[0.7, 0.2], [0.0, 0.6]]], np.float32)
    assert np.array_equal(
        merge_round_maps([a, b]), np.array([[[0.7, 1.0], [0.0, 0.6]]], np.float32)
    )
    assert np.array_equal(merge_round_maps([a]), a)
    with pytest.raises(ValueError, match="differ in shape"):
        merge_round_maps([a, b[:, :1]])
    with pytest.raises(ValueError):
        merge_round_maps([])


def test_stop_rule_drops_a_round_under_the_share_of_the_first_map():
    assert not object_gone(0.6, 0.8, 0.5)
    assert object_gone(0.39, 0.8, 0.5)
    assert not object_gone(0.4, 0.8, 0.5)  # exactly half is not under half
    assert object_gone(float("nan"), 0.8, 0.5)
    assert not object_gone(0.0, 0.8, 0.0)  # ratio 0: never stops early
    with pytest.raises(ValueError):
        object_gone(0.5, 0.5, 1.5)


def test_config_is_off_by_default_and_refuses_bad_values():
    assert ClassifierTrainConfig().erasing_rounds == 0
    assert ClassifierTrainConfig(erasing_rounds=3).erasing_threshold == 0.8
    with pytest.raises(ValueError, match="needs finetune: head"):
        ClassifierTrainConfig(erasing_rounds=1, finetune="frozen")
    for bad in ({"erasing_rounds": -1}, {"erasing_threshold": 1.0}, {"erasing_stop_ratio": 2.0}):
        with pytest.raises(ValueError, match="erasing_"):
            ClassifierTrainConfig(**bad)


def _model(extra=0, seed=0):
    torch.manual_seed(seed)
    model = CamClassifier(SMALL)
    with torch.no_grad():
        model.classifier.weight.normal_(std=1.0)
    model.add_extra_heads(extra)
    return model.eval()


def test_old_checkpoints_load_and_extra_heads_round_trip(tmp_path):
    old = _model()
    state = old.state_dict()
    assert extra_head_count(state) == 0 and not any(k.startswith("extra") for k in state)
    save_model(old, SMALL, str(tmp_path / "old.pt"), ["bg", "a", "b", "c"])
    loaded, _, _ = load_classifier(str(tmp_path / "old.pt"))
    assert len(loaded.extra_heads) == 0

    new = _model(extra=2)
    with torch.no_grad():
        for head in new.extra_heads:
            head.weight.normal_()
    save_model(new, SMALL, str(tmp_path / "new.pt"), ["bg", "a", "b", "c"])
    loaded, _, _ = load_classifier(str(tmp_path / "new.pt"))
    assert len(loaded.extra_heads) == 2
    for mine, theirs in zip(new.extra_heads, loaded.extra_heads, strict=True):
        assert torch.equal(mine.weight, theirs.weight)


def test_extra_heads_change_the_cams_only_where_they_fire():
    images = [_image(64, 64, s) for s in range(2)]
    tags = [[1, 2], [3]]
    base = _model()
    plain, plain_scores = compute_cams(base, images, tags, CAMS)
    with_extra = _model(extra=1)
    with torch.no_grad():  # the extra head: class 1 only (others silent)
        with_extra.extra_heads[0].weight.zero_()
        with_extra.extra_heads[0].weight[0].normal_(std=1.0)
    merged, scores = compute_cams(with_extra, images, tags, CAMS)
    rounds, _ = compute_round_cams(with_extra, images, tags, CAMS)
    extra_map = rounds[0][1][0]
    assert np.allclose(rounds[0][0], plain[0]) and np.allclose(extra_map.max(), 1.0)
    assert np.allclose(merged[0][0], np.maximum(plain[0][0], extra_map))
    assert not np.allclose(merged[0][0], plain[0][0])  # it fires: the map grows there
    assert np.allclose(
        merged[0][0][extra_map <= plain[0][0]], plain[0][0][extra_map <= plain[0][0]]
    )
    assert np.allclose(merged[0][1], plain[0][1]) and np.allclose(merged[1], plain[1])  # silent
    assert all(np.allclose(a, b) for a, b in zip(scores, plain_scores, strict=True))


def test_tag_lists_are_one_based():
    assert tag_lists(np.array([[0, 1, 1], [0, 0, 0]], np.float32)) == [[2, 3], []]


def test_heldout_map_tells_separable_from_noise():
    rng = np.random.default_rng(0)
    images = np.repeat(np.arange(40), 2)  # two views per image, one fold
    labels = (np.arange(40) % 2 == np.arange(40) // 20).astype(np.float32)
    targets = np.stack([labels, 1 - labels], 1)[images]
    cfg = ClassifierTrainConfig(head_steps=200)
    weight = torch.ones(2)
    signal = np.concatenate([targets * 3, rng.normal(size=(80, 6))], 1).astype(np.float32)
    noise = rng.normal(size=(80, 8)).astype(np.float32)
    assert heldout_map(HeadRows(signal, targets, images), weight, cfg) > 0.95
    assert heldout_map(HeadRows(noise, targets, images), weight, cfg) < 0.8


class _Shard:
    """The part of a Ray Data shard the head fit reads: iter_torch_batches over fixed rows."""

    def __init__(self, images, targets):
        self.images, self.targets = images, targets

    def iter_torch_batches(self, batch_size, dtypes, device, **_):
        for start in range(0, len(self.images), batch_size):
            yield {
                "image": torch.from_numpy(self.images[start : start + batch_size]),
                "target": torch.from_numpy(self.targets[start : start + batch_size]),
            }


def test_head_fit_runs_erasing_rounds_and_reports_their_seconds():
    from pipeline.train.classifier_loop import _fit_head  # Ray Train's loop, run without Ray

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    targets = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    cfg = ClassifierTrainConfig(model=SMALL, pretrained="weights.pt", head_sizes=(32,),
                                image_size=32, batch_size=4, head_steps=20,
                                erasing_rounds=2, erasing_stop_ratio=0.0)  # fmt: skip
    model = _model()
    timings, (scores, seen) = _fit_head(model, _Shard(images, targets), cfg, "cpu", torch.ones(3))
    assert len(model.extra_heads) == 2  # ratio 0: no round is dropped
    assert {"erasing_round1_s", "erasing_round2_s", "erasing_round0_heldout_map"} <= set(timings)
    assert timings["erasing_rounds_kept"] == 2 and scores.shape == seen.shape == (8, 3)
    assert not torch.equal(model.extra_heads[0].weight, model.classifier.weight)
