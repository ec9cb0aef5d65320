"""The per-method training loss (pipeline.train.segmenter_objective) and its config keys."""

import pytest
import torch

from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.classifier import normalize
from pipeline.models.deeplab import segmentation_loss
from pipeline.train.config import SegmenterTrainConfig
from pipeline.train.segmenter_objective import grown_target, training_loss

STATS = (IMAGENET_MEAN, IMAGENET_STD)
NO_TERMS = {"weight": None, "logit_offset": None}


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 16, 16, generator=gen, requires_grad=True)
    images = torch.randint(1, 255, (2, 16, 16, 3), generator=gen, dtype=torch.uint8)
    target = torch.full((2, 16, 16), 255, dtype=torch.int64)
    target[:, :4] = 0
    target[:, 8:12, 4:8] = 1
    return logits, normalize(images, STATS), target


def test_plain_ce_is_the_segmentation_loss_with_no_parts():
    logits, x, y = _batch()
    offset = torch.log(torch.tensor([0.8, 0.15, 0.05]))
    terms = {"weight": None, "logit_offset": offset}
    loss, parts = training_loss(logits, x, y, SegmenterTrainConfig(), terms, STATS)
    assert parts == {}
    assert loss.item() == pytest.approx(segmentation_loss(logits, y, 255, **terms).item())


def test_sec_adds_expansion_and_constrain_to_the_seeding_ce():
    logits, x, y = _batch(1)
    cfg = SegmenterTrainConfig(loss="sec", sec_stride=4)
    offset = torch.log(torch.tensor([0.8, 0.15, 0.05]))  # the logit adjustment still applies
    loss, parts = training_loss(logits, x, y, cfg, {"weight": None, "logit_offset": offset}, STATS)
    assert set(parts) == {"ce", "expand", "constrain"}
    ce = segmentation_loss(logits, y, 255, logit_offset=offset).item()
    assert parts["ce"] == pytest.approx(ce)
    assert loss.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_dsrg_trains_on_the_grown_target():
    logits, x, y = _batch(2)
    sure = torch.zeros_like(logits).detach()
    sure[:, 1] = 10.0  # the net is sure of class 1 everywhere: its region grows
    cfg = SegmenterTrainConfig(seed_growing="dsrg")
    grown = grown_target(sure, x, y, cfg, STATS)
    assert (grown[y != 255] == y[y != 255]).all()
    assert (grown == 1).sum() > (y == 1).sum()
    loss, parts = training_loss(sure.requires_grad_(), x, y, cfg, NO_TERMS, STATS)
    assert parts["grown"] > 0
    assert loss.item() == pytest.approx(segmentation_loss(sure, grown, 255).item())


def test_dsrg_and_sec_combine():
    logits, x, y = _batch(3)
    cfg = SegmenterTrainConfig(loss="sec", seed_growing="dsrg", sec_stride=4)
    loss, parts = training_loss(logits, x, y, cfg, NO_TERMS, STATS)
    assert set(parts) == {"grown", "ce", "expand", "constrain"}
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "bce"}, "loss must be ce or sec"),
        ({"sec_fg_decay": 1.5}, "sec_fg_decay must be in"),
        ({"sec_stride": 0}, "sec_stride must be an integer"),
        ({"sec_stride": 2.5}, "sec_stride must be an integer"),
        ({"seed_growing": "srg"}, "seed_growing must be none or dsrg"),
        ({"dsrg_bg_threshold": 1.0}, "dsrg_bg_threshold must be in"),
        ({"curriculum": "stc"}, "curriculum must be none or simple_first"),
        ({"simple_epochs": 0}, "simple_epochs must be"),
        ({"simple_epochs": 2.5}, "simple_epochs must be"),
    ],
)
def test_method_config_refuses_unknown_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmenterTrainConfig(**kwargs)


def test_methods_are_off_by_default():
    cfg = SegmenterTrainConfig()
    assert (cfg.loss, cfg.seed_growing, cfg.curriculum) == ("ce", "none", "none")
    assert (cfg.dsrg_bg_threshold, cfg.dsrg_fg_threshold) == (0.99, 0.85)
    assert (cfg.sec_fg_decay, cfg.sec_bg_decay) == (0.996, 0.999)
