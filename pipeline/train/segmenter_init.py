"""The segmenter backbone's starting weights (torch only; no Ray).

`init_from` (a classifier checkpoint, whose state dict holds `backbone.`-prefixed tensors, or a
bare backbone state dict) wins over `pretrained` (imagenet | none | a weights URI, as for the
classifier: pipeline.train.finetune.initial_weights). A ResNet maps tensors by name (at least half
must fit); every other backbone loads strictly.
"""

from __future__ import annotations

import hashlib
import logging

from torch import nn

from pipeline import storage
from pipeline.checkpoint import load_pretrained_backbone, read_state_dict
from pipeline.models.backbone import ResNet
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.pretrained import IMAGENET_HEAD_PREFIX, WeightsError, WeightsInfo
from pipeline.train.finetune import initial_weights

log = logging.getLogger(__name__)
CLASSIFIER_BACKBONE_PREFIX = "backbone."


def backbone_tensors(state: dict) -> dict:
    """The backbone's tensors of a state dict: a classifier's `backbone.*` keys without the
    prefix, or (a bare backbone state dict) everything but an ImageNet `_fc.` classifier."""
    inner = {
        k[len(CLASSIFIER_BACKBONE_PREFIX) :]: v
        for k, v in state.items()
        if k.startswith(CLASSIFIER_BACKBONE_PREFIX)
    }
    return inner or {k: v for k, v in state.items() if not k.startswith(IMAGENET_HEAD_PREFIX)}


def load_init_from(model: DeepLabV3, uri: str) -> WeightsInfo:
    """Load model.backbone from a classifier checkpoint or backbone state dict, in place."""
    if isinstance(model.backbone, ResNet):
        report = load_pretrained_backbone(model, uri)  # name mapping, strips known prefixes
        log.info("backbone from %s: %s", uri, report.summary())
    else:
        result = model.backbone.load_state_dict(
            backbone_tensors(read_state_dict(uri)), strict=False
        )
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                f"init_from {uri} does not fit the {model.cfg.backbone} backbone: "
                f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]} "
                f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected)"
            )
    return WeightsInfo(origin=uri, sha256=hashlib.sha256(storage.read_bytes(uri)).hexdigest())


def init_backbone(model: nn.Module, init_from: str | None, pretrained: str) -> WeightsInfo | None:
    """The segmenter backbone's starting weights, in place; None when it starts from scratch."""
    if init_from:
        return load_init_from(model, init_from)
    return initial_weights(model.backbone, model.cfg.backbone, pretrained)
