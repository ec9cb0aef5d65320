import pytest
import torch

from pipeline.models.classifier import CamClassifier, normalize, pool_maps
from pipeline.models.config import ModelConfig

TINY = ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16, num_classes=5)


def test_forward_and_cams_shapes():
    model = CamClassifier(TINY).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        assert model.cams(x).shape == (2, 5, 4, 5)


def test_gap_logits_are_the_mean_of_the_cams():
    model = CamClassifier(TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model.cams(x).mean(dim=(2, 3)), atol=1e-6)
    assert model.classifier.bias is None


def test_pooling_orders_between_mean_and_max():
    maps = torch.randn(2, 3, 6, 6)
    mean, peak = maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))
    for pooling in ("lse", "gwrp"):
        pooled = pool_maps(maps, pooling, lse_r=5.0, decay=0.9)
        assert torch.all(pooled >= mean - 1e-5) and torch.all(pooled <= peak + 1e-5)
    assert torch.allclose(pool_maps(maps, "lse", lse_r=1000.0), peak, atol=0.01)
    with pytest.raises(ValueError):
        pool_maps(maps, "max")


@pytest.mark.parametrize("pooling", ["gap", "lse", "gwrp"])
def test_every_pooling_trains(pooling):
    cfg = ModelConfig(backbone="resnet", depth=18, width=8, output_stride=32, num_classes=3, pooling=pooling)
    model = CamClassifier(cfg)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.randn(2, 3, 64, 64)), torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    )
    loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0


def test_normalize_layout_and_statistics():
    images = torch.full((1, 4, 5, 3), 255, dtype=torch.uint8)
    x = normalize(images)
    assert x.shape == (1, 3, 4, 5)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                        (1 - 0.406) / 0.225]))  # fmt: skip
