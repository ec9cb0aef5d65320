"""The segmenter's training loss per method (SegmenterTrainConfig.loss and .seed_growing), for
one augmented batch. Pure torch (plus the numpy dense CRF for SEC), no Ray: the Ray Train loop
(segmenter_loop._train_epoch) calls `training_loss` after the forward pass.

- loss ce: cross-entropy on the pseudo-label, 255 ignored (models.deeplab.segmentation_loss,
  with the class weights and logit offsets of `terms`).
- loss sec: that cross-entropy as SEC's seeding loss, plus its expansion and constrain losses
  (train.sec_loss) on the softmax of the model's own logits (the logit offset is a property of
  the cross-entropy only).
- seed_growing dsrg: before either, the detached softmax of the same forward pass grows the
  pseudo-label's regions into adjacent 255 pixels (train.seed_growing).

The batches carry images and masks, not tags: the classes of an image are those its cropped
mask holds (seed_growing.present_classes).
"""

from __future__ import annotations

import torch

from pipeline.models.deeplab import segmentation_loss
from pipeline.schema import IGNORE
from pipeline.train.config import SegmenterTrainConfig
from pipeline.train.sec_loss import sec_terms
from pipeline.train.seed_growing import grow_seeds, padding_pixels, present_classes


def grown_target(
    logits: torch.Tensor, x: torch.Tensor, target: torch.Tensor, cfg: SegmenterTrainConfig, stats
) -> torch.Tensor:
    """DSRG: target grown by the batch's own prediction (no gradient), kept out of padding.

    logits (B, C, H, W) float, x (B, 3, H, W) float normalised with stats, target (B, H, W)
    int64 with 255 = ignore -> (B, H, W) int64 with 255 = ignore.
    """
    with torch.no_grad():
        return grow_seeds(
            target,
            torch.softmax(logits.detach(), dim=1),
            present_classes(target, logits.shape[1]),
            cfg.dsrg_fg_threshold,
            cfg.dsrg_bg_threshold,
            growable=~padding_pixels(x, stats),
        )


def training_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: SegmenterTrainConfig,
    terms: dict | None,
    stats,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(the loss to back-propagate, its parts as floats for logging) of one batch.

    logits (B, C, H, W) float (the forward pass, float32); x (B, 3, H, W) the augmented inputs,
    normalised with stats = (mean, std) in 0-255 units; target (B, H, W) int64 with 255 =
    ignore; terms {"weight": (C,) or None, "logit_offset": (C,) or None} for the cross-entropy
    (None: neither).
    Parts (none for plain ce): "ce", "expand" and "constrain" with loss sec; "grown" (the share
    of the batch's pixels DSRG labelled) with seed_growing dsrg.
    """
    parts: dict[str, float] = {}
    if cfg.seed_growing == "dsrg":
        grown = grown_target(logits, x, target, cfg, stats)
        parts["grown"] = float(((grown != target).sum() / target.numel()).item())
        target = grown
    loss = segmentation_loss(logits, target, IGNORE, **(terms or {}))
    if cfg.loss == "sec":
        parts["ce"] = float(loss.item())
        extra = sec_terms(
            logits,
            x,
            present_classes(target, logits.shape[1]),
            stats,
            cfg.sec_stride,
            cfg.sec_fg_decay,
            cfg.sec_bg_decay,
        )
        parts.update({name: float(value.item()) for name, value in extra.items()})
        loss = loss + extra["expand"] + extra["constrain"]
    return loss, parts
