"""Built-in foreground/background prior (Saleh et al., ECCV 2016): a class-agnostic foreground map
from a pretrained backbone's own activations.

A mid and a late stage's activations are each reduced over channels, normalised to [0, 1],
brought to one size and averaged; callers refine the map with a dense CRF (the image route's
own CRF does that). ``foreground_prior`` is the pure numpy core; ``image_activations`` runs a
backbone on one image and returns the two stages' activations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.models.backbone import ResNet
from pipeline.models.classifier import input_stats, normalize
from pipeline.models.efficientnet import STAGES, VARIANTS, EfficientNetLite

# EfficientNet-Lite: the 112-channel stage, the last one at stride 16 before the final
# downsampling (VGG conv4's place in Saleh et al.); ResNet: layer3.
EFFICIENTNET_MID_STAGE = 4


def _reduce(activation: np.ndarray) -> np.ndarray:
    # Mean |a|, not mean a: EfficientNet's block outputs are linear (no ReLU), so their sign
    # carries no "on" meaning; for ReLU'd maps the two are equal (Saleh's channel mean).
    return np.abs(activation.astype(np.float32)).mean(axis=0)


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(x, np.float32)


def foreground_prior(activations: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Stage activations -> HxW float32 foreground probability in [0, 1].

    activations: one C_i x h_i x w_i float array per stage (any channels and sizes, e.g. a mid
    and a late stage of one image). Each is reduced to its channel-mean magnitude, min-max
    normalised, resized (bilinear) to height x width, and the maps are averaged, then normalised
    again. A flat stage (no contrast) contributes zeros; no stages gives all zeros.
    """
    if not activations:
        return np.zeros((height, width), np.float32)
    maps = [
        cv2.resize(_unit(_reduce(a)), (width, height), interpolation=cv2.INTER_LINEAR)
        for a in activations
    ]
    return _unit(np.mean(maps, axis=0))


def mid_stage(backbone: nn.Module) -> int:
    """Index into ``backbone.stages()`` of the mid stage whose output the prior uses."""
    if isinstance(backbone, EfficientNetLite):
        depth = VARIANTS[backbone.variant][1]
        counts = [
            r if i in (0, len(STAGES) - 1) else int(math.ceil(depth * r))
            for i, (r, *_rest) in enumerate(STAGES)
        ]
        return sum(counts[: EFFICIENTNET_MID_STAGE + 1])  # stages()[0] is the stem
    if isinstance(backbone, ResNet):
        return 3
    raise ValueError(f"no mid stage known for {type(backbone).__name__}")


def _input(image: np.ndarray, backbone: nn.Module, short_side: int) -> torch.Tensor:
    height, width = image.shape[:2]
    factor = short_side / min(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resized = cv2.resize(
        image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    )
    return normalize(torch.from_numpy(np.ascontiguousarray(resized))[None], input_stats(backbone))


@contextmanager
def captured_activations(backbone: nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """While open, each forward of ``backbone`` appends its (mid, late) outputs, batched
    (B, C, h, w) tensors, to the yielded list: a CAM pass gives the prior's inputs for free."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    mids: list[torch.Tensor] = []
    hooks = [
        backbone.stages()[mid_stage(backbone)].register_forward_hook(
            lambda _m, _i, out: mids.append(out)
        ),
        backbone.register_forward_hook(lambda _m, _i, out: calls.append((mids.pop(), out))),
    ]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


@torch.inference_mode()
def image_activations(
    backbone: nn.Module, image: np.ndarray, short_side: int = 320
) -> list[np.ndarray]:
    """[mid, late] activations (C x h x w float32 each) of one HxWx3 uint8 RGB image resized to
    ``short_side`` (aspect kept): the mid stage's output (``mid_stage``) and the backbone's output.
    """
    with captured_activations(backbone.eval()) as calls:
        backbone(_input(image, backbone, short_side))
    return [a[0].float().numpy() for a in calls[0]]
