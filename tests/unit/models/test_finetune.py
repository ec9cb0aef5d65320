import pytest
import torch

from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.finetune import (
    fit_linear_head,
    freeze,
    initial_weights,
    positive_weights,
    set_train_mode,
)


def test_positive_weights_balance_rare_classes_and_are_clipped():
    targets = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    weights = positive_weights(targets, max_weight=2.0)
    assert weights.tolist() == [1.0, 2.0, 2.0]  # 1/3 -> 1; 3/1 -> clipped 2; no positive -> 2
    assert positive_weights(targets, 10.0)[1] == 3.0


def test_linear_head_separates_features_and_class_balance_helps_the_rare_class():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 16, generator=generator)
    targets = torch.zeros(200, 2)
    targets[:, 0] = (features[:, 0] > 0).float()  # common class
    targets[:, 1] = (features[:, 1] > 1.8).float()  # rare class (~4%)
    plain = fit_linear_head(features, targets, torch.ones(2), 300, 0.05, 0.0, 0)
    balanced = fit_linear_head(
        features, targets, positive_weights(targets, 30.0), 300, 0.05, 0.0, 0
    )
    assert plain.shape == (2, 16)
    common = ((features @ plain.T)[:, 0] > 0).float().eq(targets[:, 0]).float().mean()
    assert common > 0.9
    rare = targets[:, 1] > 0

    def recall(weight):
        return float(((features @ weight.T)[rare, 1] > 0).float().mean())

    assert recall(balanced) > recall(plain)


def test_freeze_modes_and_frozen_batchnorm():
    model = CamClassifier(ModelConfig(backbone="resnet", width=8, num_classes=2))
    trainable = lambda: [p.requires_grad for p in model.backbone.parameters()]  # noqa: E731
    freeze(model.backbone, "head", 2)
    assert not any(trainable())
    freeze(model.backbone, "partial", 1)
    assert any(trainable()) and not all(trainable())
    assert all(p.requires_grad for p in model.backbone.layer4.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer3.parameters())
    freeze(model.backbone, "full", 0)
    assert all(trainable())
    set_train_mode(model, model.backbone, freeze_bn=True)
    assert model.training and not model.backbone.bn1.training
    set_train_mode(model, model.backbone, freeze_bn=False)
    assert model.backbone.bn1.training


def test_initial_weights_none_keeps_random_init_and_imagenet_records_the_origin():
    model = CamClassifier(ModelConfig(num_classes=2))
    assert initial_weights(model.backbone, "efficientnet_lite0", "none") is None
    info = initial_weights(model.backbone, "efficientnet_lite0", "imagenet")
    assert info.origin.startswith("package:")


def test_config_rejects_combinations_that_cannot_work():
    with pytest.raises(ValueError, match="finetune: full"):
        ClassifierTrainConfig(pretrained="none")
    with pytest.raises(ValueError, match="finetune must be one of"):
        ClassifierTrainConfig(finetune="some")
    with pytest.raises(ValueError, match="no packaged ImageNet weights for resnet"):
        ClassifierTrainConfig(model=ModelConfig(backbone="resnet"))


def test_videos_join_classifier_training_only_when_asked(tmp_path):

    from pipeline.collection import read_collection
    from pipeline.sample_data import generate
    from pipeline.train.classifier_data import load_training_set

    collection = read_collection(generate(str(tmp_path / "c"), images=2, videos=1))
    images_only = load_training_set(collection, ClassifierTrainConfig(head_sizes=(32,)))
    with_frames = load_training_set(
        collection, ClassifierTrainConfig(head_sizes=(32,), video_frames=True)
    )
    assert len(images_only.images) == 2 and images_only.images.shape[1:] == (32, 32, 3)
    assert len(with_frames.images) > 2 and not images_only.skipped
