import pytest
import torch
from torch import nn

from pipeline.models.backbone import ResNet, build_backbone, load_backbone_state
from pipeline.models.config import ModelConfig


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_output_stride_sets_feature_size(stride):
    model = ResNet(depth=18, width=8, output_stride=stride).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, model.out_channels, 64 // stride, 96 // stride)


@pytest.mark.parametrize(("depth", "channels"), [(18, 64), (34, 64), (50, 256)])
def test_out_channels_follow_block_type(depth, channels):
    model = ResNet(depth=depth, width=8, output_stride=32).eval()
    assert model.out_channels == channels
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape[1] == channels


def test_dilation_keeps_receptive_field_growing():
    model = ResNet(depth=18, width=8, output_stride=8)
    assert model.layer4[1].conv1.dilation == (4, 4)
    assert model.layer3[1].conv1.dilation == (2, 2)
    assert model.layer4[0].conv1.stride == (1, 1)


def test_invalid_depth_and_stride_are_refused():
    with pytest.raises(ValueError, match="depth"):
        ResNet(depth=20)
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(output_stride=4)


def test_build_backbone_takes_any_config_with_the_fields():
    model = build_backbone(ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16))
    assert isinstance(model, ResNet) and model.output_stride == 16


def _torchvision_style_state(source: ResNet) -> dict[str, torch.Tensor]:
    """What torchvision's resnet*.state_dict() looks like: our names plus an fc head."""
    state = {name: torch.randn_like(t) if t.is_floating_point() else t
             for name, t in source.state_dict().items()}  # fmt: skip
    state["fc.weight"] = torch.randn(1000, source.out_channels)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_load_torchvision_layout_copies_every_backbone_tensor():
    model = ResNet(depth=50, width=8)
    state = _torchvision_style_state(ResNet(depth=50, width=8))
    report = load_backbone_state(model, state)
    assert not report.missing and not report.mismatched and not report.unexpected
    assert torch.equal(model.layer1[0].downsample[0].weight, state["layer1.0.downsample.0.weight"])
    assert torch.equal(model.bn1.running_mean, state["bn1.running_mean"])


def test_load_strips_wrapper_prefixes_and_reports_mismatches():
    model = ResNet(depth=18, width=8)
    state = {
        f"module.{k}": v for k, v in _torchvision_style_state(ResNet(depth=18, width=8)).items()
    }
    state["module.conv1.weight"] = torch.randn(16, 3, 7, 7)  # another width
    state["module.extra.weight"] = torch.randn(3)
    report = load_backbone_state(model, state)
    assert report.mismatched and report.mismatched[0].startswith("conv1.weight")
    assert report.unexpected == ["module.extra.weight"]
    assert report.missing == ["conv1.weight"]
    assert torch.equal(model.layer4[1].conv2.weight, state["module.layer4.1.conv2.weight"])


def test_backbone_trains():
    model = ResNet(depth=18, width=8, output_stride=16)
    head = nn.Linear(model.out_channels, 1)
    loss = head(model(torch.randn(2, 3, 32, 32)).mean(dim=(2, 3))).sum()
    loss.backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
