"""DeepLab v3 segmenter in plain torch: a dilated backbone (EfficientNet-Lite or ResNet), ASPP and
bilinear upsampling.

ASPP (Chen et al., 2017): a 1x1 branch, one 3x3 atrous branch per rate and an image-pooling branch,
each with batch norm and ReLU, concatenated and projected; a 3x3 conv and a 1x1 classifier follow.
The logits are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.backbone import build_backbone
from pipeline.models.config import DeepLabConfig


def effective_rates(cfg: DeepLabConfig) -> tuple[int, ...]:
    """ASPP rates for the configured output stride (the configured rates are for stride 16:
    doubled at 8, halved at 32, at least 1)."""
    return tuple(max(1, rate * 16 // cfg.output_stride) for rate in cfg.aspp_rates)


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ImagePooling(nn.Module):
    """Global average pool -> 1x1 conv + BN + ReLU -> broadcast back to the feature size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.project = _conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(F.adaptive_avg_pool2d(x, 1))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """(B, cin, h, w) -> (B, channels, h, w): 1x1 + one atrous 3x3 per rate + image pooling."""

    def __init__(self, cin: int, channels: int, rates: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, channels, 1)]
        branches += [_conv_bn_relu(cin, channels, 3, rate) for rate in rates]
        branches.append(ImagePooling(cin, channels))
        self.branches = nn.ModuleList(branches)
        self.project = _conv_bn_relu(channels * len(branches), channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.project(torch.cat([branch(x) for branch in self.branches], dim=1)))


class DeepLabV3(nn.Module):
    """forward: (B, 3, H, W) float normalised with the backbone's input_mean / input_std
    (pipeline.models.classifier.input_stats) -> logits (B, num_classes, H, W)."""

    def __init__(self, cfg: DeepLabConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        channels = cfg.aspp_channels
        self.aspp = ASPP(self.backbone.out_channels, channels, effective_rates(cfg), cfg.dropout)
        self.head = _conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, cfg.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.head(self.aspp(self.backbone(x))))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, ASPP + head parameters)."""
        head = [*self.aspp.parameters(), *self.head.parameters(), *self.classifier.parameters()]
        return list(self.backbone.parameters()), head


def poly_lr_factor(step: int, total_steps: int, power: float) -> float:
    """DeepLab's poly schedule: (1 - step / total) ** power, 1.0 at step 0, 0.0 at the end."""
    if total_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Mean cross-entropy over non-ignored pixels; 0 (with a gradient) when every pixel is ignored.

    logits (B, C, H, W) float, target (B, H, W) int64 with ignore_index = 255.
    """
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp(min=1)
    return total / count
