"""Multi-label CAM classifier: a backbone + 1x1 conv class head, pooled to image logits.

The head is a bias-free 1x1 convolution applied to the feature map, so the class activation maps are
the head's output before pooling (Zhou et al., CVPR 2016); pooling them gives the image logits.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.backbone import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from pipeline.models.config import ModelConfig

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std), 0-255 units


class CamClassifier(nn.Module):
    """forward: (B, 3, H, W) normalised float -> logits (B, C); cams: -> raw maps (B, C, h, w).

    extra_heads: the heads of adversarial-erasing rounds after the first (pipeline.models.erasing),
    empty unless training added them; they change the CAMs (merged), not the logits.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(self.backbone.out_channels, cfg.num_classes, 1, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.01)
        self.extra_heads = nn.ModuleList()

    def new_head(self) -> nn.Conv2d:
        """A head shaped like the classifier's (bias-free 1x1 conv), on the classifier's device."""
        weight = self.classifier.weight
        head = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=False)
        return head.to(device=weight.device, dtype=weight.dtype)

    def add_extra_heads(self, count: int) -> None:
        """Append count heads (checkpoints with erasing rounds: made before their weights load)."""
        for _ in range(count):
            self.extra_heads.append(self.new_head())

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (not ReLU'd) class activation maps, (B, C, ceil(H/os), ceil(W/os)) float."""
        return self.classifier(self.dropout(self.backbone(x)))

    def pool(self, cams: torch.Tensor) -> torch.Tensor:
        """Raw maps (B, C, h, w) -> logits (B, C) by the configured pooling."""
        return pool_maps(cams, self.cfg.pooling, self.cfg.lse_r, self.cfg.gwrp_decay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.cams(x))

    @property
    def input_stats(self) -> Stats:
        return input_stats(self.backbone)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters): pretrained backbones train at a lower rate."""
        return list(self.backbone.parameters()), list(self.classifier.parameters())


def pool_maps(
    maps: torch.Tensor, pooling: str, lse_r: float = 5.0, decay: float = 0.996
) -> torch.Tensor:
    """(B, C, h, w) -> (B, C). gap: mean; lse: (1/r) log mean exp(r x); gwrp: rank-weighted mean."""
    flat = maps.flatten(2)
    if pooling == "gap":
        return flat.mean(dim=2)
    if pooling == "lse":
        count = torch.log(torch.tensor(float(flat.shape[2]), device=flat.device, dtype=flat.dtype))
        return (torch.logsumexp(lse_r * flat, dim=2) - count) / lse_r
    if pooling == "gwrp":
        ranked = flat.sort(dim=2, descending=True).values
        weights = decay ** torch.arange(flat.shape[2], device=flat.device, dtype=flat.dtype)
        return (ranked * weights).sum(dim=2) / weights.sum()
    raise ValueError(f"unknown pooling {pooling!r} (gap, lse, gwrp)")


def input_stats(backbone: nn.Module) -> Stats:
    """(mean, std) in 0-255 units a backbone's inputs are normalised with."""
    return (
        tuple(getattr(backbone, "input_mean", IMAGENET_MEAN)),
        tuple(getattr(backbone, "input_std", IMAGENET_STD)),
    )


def normalize(images: torch.Tensor, stats: Stats = (IMAGENET_MEAN, IMAGENET_STD)) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 (rgb - mean) / std, stats in 0-255 units."""
    return normalize_float(images.permute(0, 3, 1, 2).float().div_(255.0), stats)


def normalize_float(
    x: torch.Tensor, stats: Stats = (IMAGENET_MEAN, IMAGENET_STD)
) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> (x * 255 - mean) / std, stats in 0-255 units."""
    mean = torch.tensor(stats[0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255.0
    std = torch.tensor(stats[1], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255.0
    return (x - mean) / std


def extra_head_count(state_dict: dict) -> int:
    """How many extra (erasing-round) heads a CamClassifier state dict holds; 0 for old ones."""
    prefix = "extra_heads."
    return len({k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)})
