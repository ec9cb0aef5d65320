"""Model checkpoints: one torch file per model, on a local path or s3://, written atomically.

Layout: {"model_config": asdict(ModelConfig), "state_dict": ..., "classes": [label space],
...extra}.
A uri without a `.pt`/`.pth` suffix names a folder holding `model.pt`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, fields
from typing import Any, TypeVar

import torch
from torch import nn

from pipeline import storage
from pipeline.models.backbone import LoadReport, ResNet, load_backbone_state
from pipeline.models.classifier import CamClassifier, extra_head_count
from pipeline.models.config import LEGACY_HEAD, ModelConfig
from pipeline.models.pretrained import WeightsError, WeightsInfo, load_strict

MODEL_FILE = "model.pt"
C = TypeVar("C")  # a model config dataclass


def model_file_uri(uri: str) -> str:
    """The file a checkpoint uri names: itself when it ends in .pt/.pth, else uri/model.pt."""
    return uri if uri.rstrip("/").endswith((".pt", ".pth")) else storage.join(uri, MODEL_FILE)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model)


def save_model(
    model: nn.Module,
    model_cfg: Any,
    uri: str,
    classes: list[str] | tuple[str, ...] | None = None,
    extra: dict | None = None,
) -> str:
    """Write one checkpoint file (atomic) and return its uri. model_cfg is a dataclass."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {
        **(extra or {}),
        "model_config": asdict(model_cfg),
        "state_dict": state,
        "classes": list(classes) if classes is not None else None,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    target = model_file_uri(uri)
    storage.write_bytes(target, buffer.getvalue())
    return target


def load_payload(uri: str, device: str = "cpu") -> dict:
    """The raw checkpoint dict (tensors on device). Only tensors and plain data are unpickled."""
    data = storage.read_bytes(model_file_uri(uri))
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


def config_from_dict(data: dict, config_type: type[C] = ModelConfig) -> C:
    """A saved model config dict -> config_type (ModelConfig, or DeepLabConfig for a segmenter).

    Keys this version does not know are ignored; lists (e.g. aspp_rates) become tuples.
    Checkpoints from before backbones were a choice hold a ResNet; from before heads were, DeepLab-v3.
    """
    known = {f.name for f in fields(config_type)}
    legacy = {"backbone": "resnet", "head": LEGACY_HEAD}
    values = {k: v for k, v in legacy.items() if k in known}
    values |= {k: v for k, v in data.items() if k in known}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_type(**values)


def load_classifier(
    uri: str, device: str = "cpu"
) -> tuple[CamClassifier, ModelConfig, tuple[str, ...]]:
    """(model in eval mode on device, its config, its label space incl. background)."""
    payload = load_payload(uri, device)
    cfg = config_from_dict(payload["model_config"])
    model = CamClassifier(cfg)
    model.add_extra_heads(extra_head_count(payload["state_dict"]))
    model.load_state_dict(payload["state_dict"])
    classes = tuple(payload.get("classes") or ())
    return model.to(device).eval(), cfg, classes


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """Tensors of a user-supplied weights file: a bare state dict or one under state_dict/model."""
    with storage.local_copy(uri) as path:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict):
        raise ValueError(f"{uri}: expected a state dict, got {type(payload).__name__}")
    return payload


def load_user_backbone(backbone: nn.Module, uri: str) -> WeightsInfo:
    """A user's weights file into `backbone` in place: a ResNet by name mapping (at least half
    of its tensors must fit), any other backbone strictly. Returns the origin and checksum."""
    data = storage.read_bytes(uri)
    state = read_state_dict(uri)
    if isinstance(backbone, ResNet):
        _check_fraction(load_backbone_state(backbone, state), uri)
    else:
        load_strict(backbone, state, uri)
    return WeightsInfo(origin=uri, sha256=hashlib.sha256(data).hexdigest())


def _check_fraction(report: LoadReport, uri: str, min_fraction: float = 0.5) -> LoadReport:
    total = len(report.loaded) + len(report.missing)
    if total == 0 or len(report.loaded) / total < min_fraction:
        raise WeightsError(f"pretrained weights {uri} do not fit the backbone: {report.summary()}")
    return report


def load_pretrained_backbone(
    model: CamClassifier, uri: str, min_fraction: float = 0.5
) -> LoadReport:
    """Load a pretrained ResNet (e.g. torchvision's resnet50 weights) into model.backbone.

    Raises ValueError when less than min_fraction of the backbone's tensors were found: a
    wrong depth or width is a configuration error, not something to train through silently.
    """
    report = load_backbone_state(model.backbone, read_state_dict(uri))
    return _check_fraction(report, uri, min_fraction)
