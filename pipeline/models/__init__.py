"""Plain-torch models: ResNet backbones and the CAM classifier."""

from pipeline.models.backbone import LoadReport, ResNet, build_backbone, load_backbone_state
from pipeline.models.classifier import CamClassifier, ModelConfig

__all__ = [
    "CamClassifier",
    "LoadReport",
    "ModelConfig",
    "ResNet",
    "build_backbone",
    "load_backbone_state",
]
