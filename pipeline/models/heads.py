"""Segmenter heads in plain torch, on a backbone's multi-level features (`forward_levels`: strides
4, 8, 16, 32; a dilated backbone keeps the last ones at its output stride).

Every head maps the levels to logits (B, num_classes, h, w) at its own stride; the segmenter
(pipeline.models.deeplab.DeepLabV3) upsamples them to the input size. `aspp_channels` is every
head's width; `dropout` precedes the classifier (after the ASPP projection for the ASPP heads).

- deeplabv3 (Chen et al., 2017): ASPP on the last level; built inline by DeepLabV3, whose
  state-dict keys (`aspp.`, `head.`, `classifier.`) predate this module.
- deeplabv3plus (Chen et al., 2018): ASPP, upsampled to stride 4 and concatenated with the
  1x1-reduced stride-4 level, then two 3x3 convs.
- pspnet (Zhao et al., 2017): pyramid pooling over bins 1, 2, 3, 6 on the last level.
- fcn (Long et al., 2015; torchvision's head): 3x3 conv + 1x1 classifier on the last level.
- danet (Fu et al., 2019): position and channel self-attention branches, summed.
- fastfcn (Wu et al., 2019): joint pyramid upsampling (JPU) of the undilated stride-8/16/32
  levels to stride 8, then an fcn head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.config import DeepLabConfig

PSP_BINS = (1, 2, 3, 6)
LOW_LEVEL_CHANNELS = 48  # DeepLab v3+'s reduction of the stride-4 features
JPU_DILATIONS = (1, 2, 4, 8)
ATTENTION_REDUCTION = 8  # DANet's query / key channels = width / 8


def effective_rates(cfg: DeepLabConfig) -> tuple[int, ...]:
    """ASPP rates for the configured output stride (the configured rates are for stride 16:
    doubled at 8, halved at 32, at least 1)."""
    return tuple(max(1, rate * 16 // cfg.output_stride) for rate in cfg.aspp_rates)


def conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ImagePooling(nn.Module):
    """Global average pool -> 1x1 conv + BN + ReLU -> broadcast back to the feature size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.project = conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(F.adaptive_avg_pool2d(x, 1))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """(B, cin, h, w) -> (B, channels, h, w): 1x1 + one atrous 3x3 per rate + image pooling."""

    def __init__(self, cin: int, channels: int, rates: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        branches = [conv_bn_relu(cin, channels, 1)]
        branches += [conv_bn_relu(cin, channels, 3, rate) for rate in rates]
        branches.append(ImagePooling(cin, channels))
        self.branches = nn.ModuleList(branches)
        self.project = conv_bn_relu(channels * len(branches), channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.project(torch.cat([branch(x) for branch in self.branches], dim=1)))


class FCNHead(nn.Module):
    """(B, cin, h, w) -> 3x3 conv + BN + ReLU -> dropout -> 1x1 -> (B, num_classes, h, w)."""

    def __init__(self, cin: int, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.conv = conv_bn_relu(cin, channels, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class FCN(nn.Module):
    """The baseline: an FCNHead on the last level."""

    def __init__(self, level_channels: tuple[int, ...], cfg: DeepLabConfig) -> None:
        super().__init__()
        self.fcn = FCNHead(level_channels[-1], cfg.aspp_channels, cfg.num_classes, cfg.dropout)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.fcn(levels[-1])


class DeepLabV3Plus(nn.Module):
    """ASPP on the last level, upsampled onto the 1x1-reduced stride-4 level; logits at stride 4."""

    def __init__(self, level_channels: tuple[int, ...], cfg: DeepLabConfig) -> None:
        super().__init__()
        width = cfg.aspp_channels
        self.aspp = ASPP(level_channels[-1], width, effective_rates(cfg), cfg.dropout)
        self.reduce = conv_bn_relu(level_channels[0], LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(
            conv_bn_relu(width + LOW_LEVEL_CHANNELS, width, 3), conv_bn_relu(width, width, 3)
        )
        self.classifier = nn.Conv2d(width, cfg.num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        low = self.reduce(levels[0])
        high = _resize(self.aspp(levels[-1]), low.shape[-2:])
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))


class PyramidPooling(nn.Module):
    """(B, cin, h, w) -> (B, cin + len(bins) * branch, h, w): the input and, per bin size, an
    average pool to bin x bin, a 1x1 conv + BN + ReLU, upsampled back."""

    def __init__(self, cin: int, branch: int, bins: tuple[int, ...] = PSP_BINS) -> None:
        super().__init__()
        self.bins = bins
        self.branches = nn.ModuleList(conv_bn_relu(cin, branch, 1) for _ in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [
            _resize(branch(F.adaptive_avg_pool2d(x, size)), x.shape[-2:])
            for size, branch in zip(self.bins, self.branches, strict=True)
        ]
        return torch.cat([x, *pooled], dim=1)


class PSPNet(nn.Module):
    """Pyramid pooling (each bin's branch a quarter of the input channels, as in the paper) on the
    last level, then an FCNHead."""

    def __init__(self, level_channels: tuple[int, ...], cfg: DeepLabConfig) -> None:
        super().__init__()
        cin = level_channels[-1]
        branch = max(1, cin // len(PSP_BINS))
        self.ppm = PyramidPooling(cin, branch)
        fused = cin + branch * len(PSP_BINS)
        self.fcn = FCNHead(fused, cfg.aspp_channels, cfg.num_classes, cfg.dropout)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.fcn(self.ppm(levels[-1]))


class PositionAttention(nn.Module):
    """Self-attention over positions: each pixel a softmax-weighted sum of every pixel's value;
    gamma starts at 0, so the module starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // ATTENTION_REDUCTION)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.query(x).flatten(2).transpose(1, 2)  # (B, N, inner)
        attention = torch.softmax(query @ self.key(x).flatten(2), dim=-1)  # (B, N, N)
        out = self.value(x).flatten(2) @ attention.transpose(1, 2)  # (B, C, N)
        return self.gamma * out.view_as(x) + x


class ChannelAttention(nn.Module):
    """Self-attention over channels (C x C from the features' Gram matrix); gamma starts at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        energy = flat @ flat.transpose(1, 2)
        # As in DANet's code: max minus energy, so softmax favours dissimilar channels and the
        # exponent stays bounded.
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.softmax(energy, dim=-1) @ flat
        return self.gamma * out.view_as(x) + x


class DANet(nn.Module):
    """Two branches on the last level, each 3x3 reduce -> attention -> 3x3 conv: position and
    channel attention; their sum -> dropout -> 1x1 classifier."""

    def __init__(self, level_channels: tuple[int, ...], cfg: DeepLabConfig) -> None:
        super().__init__()
        cin, width = level_channels[-1], cfg.aspp_channels
        self.position = nn.Sequential(
            conv_bn_relu(cin, width, 3), PositionAttention(width), conv_bn_relu(width, width, 3)
        )
        self.channel = nn.Sequential(
            conv_bn_relu(cin, width, 3), ChannelAttention(), conv_bn_relu(width, width, 3)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Conv2d(width, cfg.num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = levels[-1]
        return self.classifier(self.dropout(self.position(x) + self.channel(x)))


def separable_conv(cin: int, cout: int, dilation: int) -> nn.Sequential:
    """Depthwise 3x3 (dilated) + BN, pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class JPU(nn.Module):
    """Joint pyramid upsampling: the stride-8/16/32 levels, each 3x3-reduced to width and
    upsampled to stride 8, concatenated, then dilated separable convs in parallel ->
    (B, len(JPU_DILATIONS) * width, h8, w8)."""

    def __init__(self, level_channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(conv_bn_relu(c, width, 3) for c in level_channels)
        cat = width * len(level_channels)
        self.dilated = nn.ModuleList(separable_conv(cat, width, d) for d in JPU_DILATIONS)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        size = levels[0].shape[-2:]
        reduced = [_resize(r(x), size) for r, x in zip(self.reduce, levels, strict=True)]
        x = torch.cat(reduced, dim=1)
        return torch.cat([branch(x) for branch in self.dilated], dim=1)


class FastFCN(nn.Module):
    """JPU over the last three levels of an undilated backbone, then an FCNHead; logits at
    stride 8."""

    def __init__(self, level_channels: tuple[int, ...], cfg: DeepLabConfig) -> None:
        super().__init__()
        width = cfg.aspp_channels
        self.jpu = JPU(level_channels[-3:], width)
        cin = width * len(JPU_DILATIONS)
        self.fcn = FCNHead(cin, width, cfg.num_classes, cfg.dropout)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.fcn(self.jpu(levels[-3:]))


HEAD_TYPES: dict[str, type[nn.Module]] = {
    "deeplabv3plus": DeepLabV3Plus,
    "pspnet": PSPNet,
    "fcn": FCN,
    "danet": DANet,
    "fastfcn": FastFCN,
}
# Heads that replace dilation with their own upsampling: the backbone runs at stride 32.
UNDILATED_HEADS = ("fastfcn",)


def build_head(level_channels: tuple[int, ...], cfg: DeepLabConfig) -> nn.Module:
    """The head cfg.head names (not deeplabv3, which DeepLabV3 builds inline)."""
    return HEAD_TYPES[cfg.head](level_channels, cfg)
