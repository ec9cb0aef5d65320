"""The segmenter in plain torch: a backbone (EfficientNet-Lite or ResNet) and a head (cfg.head,
pipeline.models.heads), logits upsampled bilinearly to the input size.

The default head is DeepLab v3's ASPP (Chen et al., 2017): a 1x1 branch, one 3x3 atrous branch per
rate and an image-pooling branch, each with batch norm and ReLU, concatenated and projected; a 3x3
conv and a 1x1 classifier follow.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.backbone import build_backbone
from pipeline.models.config import DeepLabConfig
from pipeline.models.heads import ASPP, UNDILATED_HEADS, build_head, conv_bn_relu, effective_rates


def _segmenter_backbone(cfg: DeepLabConfig) -> nn.Module:
    if cfg.head not in UNDILATED_HEADS:
        return build_backbone(cfg)
    # Same parameters at any stride, so pretrained and classifier weights still load.
    undilated = SimpleNamespace(
        backbone=cfg.backbone, depth=cfg.depth, width=cfg.width, output_stride=32
    )
    return build_backbone(undilated)


class DeepLabV3(nn.Module):
    """The segmenter (named for its default head, as callers and checkpoints know it).

    forward: (B, 3, H, W) float normalised with the backbone's input_mean / input_std
    (pipeline.models.classifier.input_stats) -> logits (B, num_classes, H, W).
    """

    def __init__(self, cfg: DeepLabConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = _segmenter_backbone(cfg)
        if cfg.head == "deeplabv3":
            # Inline, not a heads module: keeps the state-dict keys of earlier checkpoints.
            channels = cfg.aspp_channels
            cin = self.backbone.out_channels
            self.aspp = ASPP(cin, channels, effective_rates(cfg), cfg.dropout)
            self.head = conv_bn_relu(channels, channels, 3)
            self.classifier = nn.Conv2d(channels, cfg.num_classes, 1)
        else:
            self.decoder = build_head(self.backbone.level_channels, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.head == "deeplabv3":
            logits = self.classifier(self.head(self.aspp(self.backbone(x))))
        else:
            logits = self.decoder(self.backbone.forward_levels(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters)."""
        head = [p for name, p in self.named_parameters() if not name.startswith("backbone.")]
        return list(self.backbone.parameters()), head


def poly_lr_factor(step: int, total_steps: int, power: float) -> float:
    """DeepLab's poly schedule: (1 - step / total) ** power, 1.0 at step 0, 0.0 at the end."""
    if total_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    weight: torch.Tensor | None = None,
    logit_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over non-ignored pixels; 0 (with a gradient) when every pixel is ignored.
    With per-class weights, torch's weighted mean: normalised by the summed weights of the
    non-ignored pixels. With a logit offset (tau * log class prior: the logit-adjusted loss of
    Menon et al., ICLR 2021) the offset is added to the logits inside the loss only, so the
    model's own logits learn the class-balanced posterior and rare classes are not drowned by
    the background at prediction time.

    logits (B, C, H, W) float, target (B, H, W) int64 with ignore_index = 255, weight (C,) float,
    logit_offset (C,) float.
    """
    if logit_offset is not None:
        logits = logits + logit_offset.view(1, -1, 1, 1)
    total = F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, reduction="sum"
    )
    valid = target != ignore_index
    if weight is None:
        return total / valid.sum().clamp(min=1)
    # indexing by a mask would sync the GPU every step; a multiply by it does not
    norm = (weight[target.masked_fill(~valid, 0)] * valid).sum()
    return total / norm.clamp(min=torch.finfo(norm.dtype).tiny)
