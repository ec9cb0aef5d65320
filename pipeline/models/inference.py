"""A segmenter applied to one image: `segment` (image -> class mask at any resolution).

Torch only (no Ray, no storage): webseg predict, the registry's pyfunc model and the segmenter's
validation during training all call it, so training does not depend on the predict command.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.classifier import input_stats, normalize


@torch.inference_mode()
def segment(
    model: torch.nn.Module,
    image: np.ndarray,
    long_side: int,
    out_shape: tuple[int, int] | None = None,
    allowed: Sequence[int] | None = None,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """image HxWx3 uint8 RGB -> class indices out_shape (default HxW) uint8 (never 255): the
    argmax of segment_logits (same arguments)."""
    logits = segment_logits(model, image, long_side, out_shape, allowed, shift)
    return logits.argmax(0).to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def segment_logits(
    model: torch.nn.Module,
    image: np.ndarray,
    long_side: int,
    out_shape: tuple[int, int] | None = None,
    allowed: Sequence[int] | None = None,
    shift: np.ndarray | None = None,
) -> torch.Tensor:
    """image HxWx3 uint8 RGB -> (C, *out_shape) float32 logits (out_shape default HxW).

    The image is resized to long_side, logits are upsampled bilinearly to out_shape; `shift`
    ((C,) float, e.g. class_weights.presence_shift) is added to each class's logits; classes
    outside `allowed` get -inf. The model must be in eval mode.
    """
    height, width = image.shape[:2]
    out_shape = out_shape or (height, width)
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interp) if size != (width, height) else image
    device = next(model.parameters()).device
    x = normalize(
        torch.from_numpy(np.ascontiguousarray(resized))[None].to(device),
        input_stats(getattr(model, "backbone", model)),
    )
    logits = F.interpolate(model(x).float(), size=out_shape, mode="bilinear", align_corners=False)[
        0
    ]
    if shift is not None:
        logits += torch.tensor(shift, dtype=logits.dtype, device=logits.device).view(-1, 1, 1)
    if allowed is not None:
        blocked = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        blocked[list(allowed)] = False
        logits[blocked] = -torch.inf
    return logits
