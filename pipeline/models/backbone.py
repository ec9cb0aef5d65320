"""ResNet backbones in plain torch, with DeepLab-style dilation for output stride 16 or 8.

Parameter names follow the common torch ResNet layout (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, ...), so a torchvision-style pretrained state dict maps onto it by name;
`load_backbone_state` does that mapping and reports what did not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from pipeline.models.config import BACKBONES
from pipeline.models.efficientnet import VARIANTS, EfficientNetLite

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Strides and dilations of layer2..layer4 per output stride (the stem and layer1 give stride 4).
STRIDES = {32: ((2, 1), (2, 1), (2, 1)), 16: ((2, 1), (2, 1), (1, 2)), 8: ((2, 1), (1, 2), (1, 4))}
STATE_PREFIXES = ("module.", "backbone.", "model.", "encoder.", "features.")


# ImageNet statistics in 0-255 units: what torchvision-style ResNet weights expect.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class BackboneSpec(Protocol):
    """Anything with these attributes builds a backbone (ModelConfig, a segmenter config, ...)."""

    backbone: str
    depth: int
    width: int
    output_stride: int


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes)
    )


class ResNet(nn.Module):
    """ResNet trunk without the classification head.

    forward: (B, 3, H, W) float -> (B, out_channels, ceil(H / stride), ceil(W / stride)),
    stride = output_stride. Inputs are normalised with input_mean / input_std (0-255 units).
    """

    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, depth: int = 18, width: int = 64, output_stride: int = 32) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"depth must be one of {sorted(BLOCKS)}, got {depth}")
        if output_stride not in STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(STRIDES)}, got {output_stride}")
        block = BasicBlock if depth < 50 else Bottleneck
        self.depth, self.output_stride = depth, output_stride
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        counts = BLOCKS[depth]
        plan = ((1, 1), *STRIDES[output_stride])
        self.inplanes = width
        layers = [
            self._make_layer(block, width * 2**i, counts[i], stride, dilation)
            for i, (stride, dilation) in enumerate(plan)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = width * 8 * block.expansion
        self.level_channels = tuple(width * 2**i * block.expansion for i in range(4))
        _init_weights(self)

    def _make_layer(
        self, block: type, planes: int, count: int, stride: int, dilation: int
    ) -> nn.Sequential:
        # DeepLab style: the first block of a dilated stage keeps the previous stage's dilation.
        first_dilation = max(1, dilation // 2)
        blocks = [block(self.inplanes, planes, stride, first_dilation)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, dilation) for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 (channels level_channels): strides 4, 8, 16, 32 undilated;
        a dilated layer keeps the previous one's stride. The last equals forward(x)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        levels = []
        for layer in self._layers():
            x = layer(x)
            levels.append(x)
        return levels

    def forward_to_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Output of layer(level + 1): level 0, 1, 2 = layer1, layer2, layer3."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self._layers()[: level + 1]:
            x = layer(x)
        return x

    def forward_between_levels(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """forward_to_level(x, stop) from forward_to_level(x, start)'s output (start <= stop)."""
        for layer in self._layers()[start + 1 : stop + 1]:
            x = layer(x)
        return x

    def forward_from_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """The rest of forward from forward_to_level's output."""
        for layer in self._layers()[level + 1 :]:
            x = layer(x)
        return x

    def _layers(self) -> tuple[nn.Sequential, ...]:
        return self.layer1, self.layer2, self.layer3, self.layer4

    def stages(self) -> list[nn.Module]:
        """Modules from input to output, coarse enough to freeze the first k of them."""
        stem = nn.ModuleList([self.conv1, self.bn1])
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    # Zero-init the last BN of each residual branch: every block starts as the identity.
    for module in model.modules():
        last_bn = getattr(module, "bn3", None) or getattr(module, "bn2", None)
        if isinstance(module, BasicBlock | Bottleneck) and last_bn is not None:
            nn.init.zeros_(last_bn.weight)


def build_backbone(cfg: BackboneSpec) -> nn.Module:
    """The backbone a config names (randomly initialised; weights are loaded by the caller).

    Every backbone has out_channels, output_stride, input_mean and input_std (0-255 units)."""
    name = getattr(cfg, "backbone", "resnet")
    if name in VARIANTS:
        return EfficientNetLite(name, output_stride=cfg.output_stride)
    if name == "resnet":
        return ResNet(depth=cfg.depth, width=cfg.width, output_stride=cfg.output_stride)
    raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")


@dataclass
class LoadReport:
    """What `load_backbone_state` did: tensors loaded, missing, unknown and shape conflicts."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, not in the source (kept at init)
    unexpected: list[str] = field(default_factory=list)  # source keys with no counterpart here
    mismatched: list[str] = field(default_factory=list)  # same name, different shape

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
            + (f" (e.g. {self.mismatched[:3]})" if self.mismatched else "")
        )


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STATE_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def load_backbone_state(model: ResNet, state_dict: dict[str, torch.Tensor]) -> LoadReport:
    """Copy a torch ResNet state dict onto `model` by name and shape, in place.

    Accepts torchvision-style keys, optionally prefixed (`module.`, `backbone.`, ...); the `fc.*`
    head is ignored. Tensors whose shape differs (e.g. another width) are reported, not loaded.
    """
    ours = model.state_dict()
    report, updates = LoadReport(), {}
    for raw_name, tensor in state_dict.items():
        name = _strip_prefixes(raw_name)
        if name.startswith("fc.") or not isinstance(tensor, torch.Tensor):
            continue
        if name not in ours:
            report.unexpected.append(raw_name)
        elif ours[name].shape != tensor.shape:
            report.mismatched.append(f"{name}: {tuple(tensor.shape)} vs {tuple(ours[name].shape)}")
        else:
            updates[name] = tensor.to(ours[name].dtype)
            report.loaded.append(name)
    report.missing = [n for n in ours if n not in updates]
    model.load_state_dict(updates, strict=False)
    return report
