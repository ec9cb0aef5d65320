import pytest
import torch

from pipeline.checkpoint import (
    load_classifier,
    load_payload,
    load_pretrained_backbone,
    model_file_uri,
    save_model,
)
from pipeline.models.backbone import ResNet
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig

CFG = ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16, num_classes=2, pooling="lse", lse_r=3.0)
CLASSES = ("background", "cat", "dog")


def test_round_trip_to_a_folder_uri(tmp_path):
    model = CamClassifier(CFG).eval()
    written = save_model(model, CFG, str(tmp_path / "run"), CLASSES, extra={"epoch": 7})
    assert written == str(tmp_path / "run" / "model.pt")
    loaded, cfg, classes = load_classifier(str(tmp_path / "run"))
    assert cfg == CFG and classes == CLASSES and not loaded.training
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    assert load_payload(written)["epoch"] == 7
    assert not list((tmp_path / "run").glob(".tmp-*"))


def test_pt_suffix_names_the_file_itself(tmp_path):
    assert model_file_uri(str(tmp_path / "m.pt")) == str(tmp_path / "m.pt")
    assert model_file_uri("s3://bucket/models/x") == "s3://bucket/models/x/model.pt"
    save_model(CamClassifier(CFG), CFG, str(tmp_path / "m.pt"), CLASSES)
    assert (tmp_path / "m.pt").is_file()


def test_pretrained_backbone_from_a_wrapped_state_dict(tmp_path):
    source = ResNet(depth=18, width=8)
    with torch.no_grad():
        source.conv1.weight.fill_(0.5)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {**source.state_dict(), "fc.weight": torch.zeros(10, 64)}}, path)
    model = CamClassifier(CFG)
    report = load_pretrained_backbone(model, str(path))
    assert not report.missing
    assert torch.all(model.backbone.conv1.weight == 0.5)


def test_pretrained_backbone_of_another_shape_is_an_error(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(ResNet(depth=18, width=16).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        load_pretrained_backbone(CamClassifier(CFG), str(path))
