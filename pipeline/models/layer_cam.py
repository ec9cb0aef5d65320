"""Stride-16 LayerCAM maps (Jiang et al., TIP 2021) to fuse into the stride-32 CAMs (torch; no
Ray, no I/O).

A class's LayerCAM at a layer weights each activation by its own positive gradient of the class
score, relu(sum_k relu(dS/dA_k) * A_k), so the map keeps that layer's resolution (stride 16: the
last stride-16 block) where a CAM has the head's (stride 32). Maps of shallow layers are spiky;
the paper scales them by tanh(gamma * map / max) with gamma = 2 before fusing them. Here each
tag's fused map is the mean of its peak-normalised CAM, brought to the stride-16 grid, and that
scaled LayerCAM (docs/quality.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LEVEL = 2  # forward_levels' index of the stride-16 features
GAMMA = 2.0  # the paper's tanh scaling of shallow-layer maps


def peak_normalised(maps: torch.Tensor) -> torch.Tensor:
    """(..., h, w) non-negative maps -> each divided by its own max (all zeros stay zeros)."""
    peak = maps.flatten(-2).amax(dim=-1).clamp_min(1e-5)
    return maps / peak[..., None, None]


def _gradient_map(score: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """LayerCAM of a summed class score: (N, h, w) relu(sum_k relu(dS/dA_k) * A_k)."""
    (grad,) = torch.autograd.grad(score, activations, retain_graph=True)
    return F.relu((F.relu(grad) * activations).sum(dim=1)).detach()


def layer_cam_maps(
    model: torch.nn.Module,
    prior_head: Callable[[torch.Tensor], torch.Tensor] | None,
    prior_has: torch.Tensor | None,
    stride16: torch.Tensor,
    channels: list[list[int]],
    flip: bool,
) -> list[torch.Tensor]:
    """stride16 (N, C16, h16, w16): the backbone's forward_to_level(x, LEVEL) of normalised images
    of one size, with their flipped twins as the second half when flip (inference tensors are
    fine); channels[i]: the class channels (label - 1) of image i's tags, i < B (N = 2B with
    flip, else B). The scores are the learned head's pooled logits and, for tags with an
    ImageNet prior (prior_has (C,) bool), the prior head's. Returns per image a (K_i, h16, w16)
    float32 map per tag: each head's LayerCAM peak-normalised, averaged over the heads, peak-
    normalised, tanh(GAMMA * .)-scaled and peak-normalised again (values in [0, 1])."""
    count = len(channels)
    with torch.inference_mode(False), torch.enable_grad():
        stride16 = stride16.clone().requires_grad_(True)
        features = model.backbone.forward_from_level(stride16, LEVEL)
        pooled = [model.classifier(features).mean(dim=(2, 3))]
        if prior_head is not None:
            pooled.append(prior_head(features).mean(dim=(2, 3)))
        per_tag: list[list[list[torch.Tensor]]] = [[[] for _ in tags] for tags in channels]
        for slot in range(max((len(tags) for tags in channels), default=0)):
            for head, scores in enumerate(pooled):
                rows = [
                    i
                    for i, tags in enumerate(channels)
                    if len(tags) > slot and (head == 0 or bool(prior_has[tags[slot]]))
                ]
                if not rows:
                    continue
                twins = rows + [i + count for i in rows] if flip else rows
                picked = [channels[i % count][slot] for i in twins]
                maps = _gradient_map(scores[twins, picked].sum(), stride16)
                if flip:
                    maps = maps[:count] + maps[count:].flip(-1)
                for i in rows:
                    per_tag[i][slot].append(peak_normalised(maps[i]))
    size = stride16.shape[-2:]
    return [_scaled(tags, size) for tags in per_tag]


def _scaled(tags: list[list[torch.Tensor]], size: torch.Size) -> torch.Tensor:
    if not tags:
        return torch.zeros((0, *size))
    maps = peak_normalised(torch.stack([torch.stack(heads).mean(dim=0) for heads in tags]))
    return peak_normalised(torch.tanh(GAMMA * maps)).float()


def fuse_with_cams(cams: torch.Tensor, layer_maps: torch.Tensor) -> torch.Tensor:
    """cams (K, h, w) peak-normalised stride-32 maps, layer_maps (K, h16, w16) from
    layer_cam_maps -> (K, h16, w16) float32: the mean of the two, peak-normalised."""
    if len(cams) == 0:
        return layer_maps.float()
    up = F.interpolate(cams[None].float(), size=layer_maps.shape[-2:], mode="bilinear",
                       align_corners=False)[0]  # fmt: skip
    return peak_normalised(peak_normalised(up.clamp_min(0)) + layer_maps).float()
