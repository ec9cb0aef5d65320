"""The models' config: ModelConfig (the CAM classifier) and DeepLabConfig (the segmenter), with the
backbone names and output strides they validate against. No torch: pipeline.settings imports this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2", "efficientnet_lite1", "resnet")
# Output strides each backbone family supports (EfficientNet-Lite: last stage dilated for 16).
OUTPUT_STRIDES = {"resnet": (8, 16), "efficientnet": (16, 32)}
# Segmenter heads on the backbone (pipeline.models.heads); deeplabv3 is the original model, so a
# checkpoint saved before heads were a choice (no "head" in its config) is one.
LEGACY_HEAD = "deeplabv3"
HEADS = ("deeplabv3", "deeplabv3plus", "pspnet", "fcn", "danet", "fastfcn")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # efficientnet_lite0 | efficientnet_lite2 | resnet
    depth: int = 18  # resnet only: 18/34 (basic blocks) or 50/101 (bottlenecks)
    width: int = 32  # resnet only: base width; 64 is the standard ResNet, 32 a half-width net
    output_stride: int = 32  # 32 (EfficientNet's own stride, its ImageNet head's) or 16 (last stage
    # dilated; resnet also 8). Dev, Lite0 head: image mIoU 40.9 at 16 -> 42.4 at 32, CAMs 1.7x faster
    num_classes: int = 20  # foreground classes = len(label space) - 1
    pooling: Literal["gap", "lse", "gwrp"] = "gap"  # how CAMs pool into image logits
    lse_r: float = 5.0  # log-sum-exp sharpness: small -> mean, large -> max
    gwrp_decay: float = 0.996  # global weighted rank pooling decay (Kolesnikov & Lampert, 2016)
    dropout: float = 0.0  # dropout on features before the head, training only

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")


@dataclass(frozen=True)
class DeepLabConfig:
    backbone: str = "efficientnet_lite0"  # efficientnet_lite0 | efficientnet_lite2 | resnet
    depth: int = 18  # resnet only: depth (same meaning as the classifier's, so its backbone loads)
    width: int = 32  # resnet only: base width; 32 matches the classifier default, 64 standard
    output_stride: int = 16  # resnet 8/16, efficientnet 16/32; fastfcn: 32 (undilated)
    head: str = "fastfcn"  # fastfcn | deeplabv3 | deeplabv3plus | pspnet | fcn | danet (fastfcn:
    # best and cheapest on dev, docs/quality.md; checkpoints without a head load as deeplabv3)
    aspp_rates: tuple[int, ...] = (6, 12, 18)  # atrous rates at output stride 16; doubled at 8
    aspp_channels: int = 128  # channels of every ASPP branch and projection (other heads: width)
    dropout: float = 0.1  # before the classifier (ASPP heads: after the projection), training only
    num_classes: int = 21  # label-space size incl. background (set from the label set)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEADS}")
        allowed = OUTPUT_STRIDES["resnet" if self.backbone == "resnet" else "efficientnet"]
        if self.output_stride not in allowed:
            raise ValueError(
                f"output_stride must be one of {allowed} for {self.backbone}, "
                f"got {self.output_stride}"
            )
