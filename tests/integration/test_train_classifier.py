"""Train the CAM classifier for one epoch on a dozen real dev items with a local Ray and MLflow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = Path(os.environ.get("WSSS_SAMPLE_DIR", REPO.parent / "shared" / "data" / "dev"))


def _subset_manifest(folder: Path) -> Path:
    """12 rows: coco images (one a negative), horses, one video, and one missing file."""
    rows = [json.loads(line) for line in (SAMPLE_DIR / "manifest.jsonl").read_text().splitlines()]
    coco = [r for r in rows if r["id"].startswith("coco_")]
    picked = [next(r for r in coco if not r["tags"])] + [r for r in coco if r["tags"]][:4]
    picked += [r for r in rows if r["id"].startswith("weizmann_")][:5]
    picked += [next(r for r in rows if r["kind"] == "video")]
    picked += [{"id": "missing", "uri": "media/does_not_exist.jpg", "tags": ["horse"]}]
    manifest = folder / "manifest.jsonl"
    with manifest.open("w") as out:
        for row in picked:
            out.write(json.dumps({**row, "uri": str(SAMPLE_DIR / row["uri"])}) + "\n")
    (folder / "classes.json").write_text((SAMPLE_DIR / "classes.json").read_text())
    return manifest


def test_one_epoch_writes_a_loadable_model_and_an_mlflow_run(ray_session, tmp_path):
    if not (SAMPLE_DIR / "manifest.jsonl").exists():
        pytest.skip(f"no sample collection at {SAMPLE_DIR} (set WSSS_SAMPLE_DIR)")
    import torch
    from mlflow.tracking import MlflowClient

    from pipeline.cam import class_scores
    from pipeline.cam_config import CamConfig
    from pipeline.checkpoint import load_classifier
    from pipeline.models.backbone import ResNet
    from pipeline.models.config import ModelConfig
    from pipeline.train.classifier import train_classifier
    from pipeline.train.config import ClassifierTrainConfig

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    pretrained = tmp_path / "resnet18_w16.pth"  # torchvision key layout, fc head included
    state = ResNet(depth=18, width=16).state_dict()
    torch.save(
        {**state, "fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)}, pretrained
    )
    cfg = ClassifierTrainConfig(
        model=ModelConfig(backbone="resnet", depth=18, width=16, output_stride=16), epochs=1, batch_size=4,
        image_size=64, workers=2, video_frame_stride=20, max_frames_per_video=2,
        tracking_uri=tracking_uri, storage_path=str(tmp_path / "ray"),
        pretrained=str(pretrained), finetune="full", video_frames=True,
    )  # fmt: skip
    summary = train_classifier(str(_subset_manifest(tmp_path)), str(tmp_path / "model"), cfg)

    assert summary["train_items"] == 10 + 2  # 10 images + 2 sampled frames
    assert list(summary["skipped"]) == ["missing"]
    assert 0 <= summary["map"] <= 1 and "horse" in summary["per_class_ap"]

    model, model_cfg, classes = load_classifier(str(tmp_path / "model"))
    assert model_cfg.num_classes == 20 and classes[0] == "background" and len(classes) == 21
    scores = class_scores(model, [np.zeros((40, 60, 3), np.uint8)], CamConfig(input_size=64))
    assert scores.shape == (1, 20)

    run = MlflowClient(tracking_uri).get_run(summary["mlflow_run_id"])
    assert {"loss", "train_running_map", "train_map"} <= set(run.data.metrics)
    assert run.data.params["model.width"] == "16" and run.data.params["epochs"] == "1"
    assert run.data.params["pretrained"] == str(pretrained)
    assert run.data.params["weights_origin"] == str(pretrained)
    artifacts = [
        a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id, "model")
    ]
    assert artifacts == ["model/model.pt"]


def test_default_head_fit_on_imagenet_lite0_records_its_weights(ray_session, tmp_path):
    """The default: frozen ImageNet EfficientNet-Lite0, class head fitted on pooled features."""
    if not (SAMPLE_DIR / "manifest.jsonl").exists():
        pytest.skip(f"no sample collection at {SAMPLE_DIR} (set WSSS_SAMPLE_DIR)")
    from mlflow.tracking import MlflowClient

    from pipeline.checkpoint import load_classifier, load_payload
    from pipeline.models.pretrained import sha256_of_file, weights_path
    from pipeline.train.classifier import train_classifier
    from pipeline.train.config import ClassifierTrainConfig

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = ClassifierTrainConfig(
        head_sizes=(128,), head_steps=200, workers=2, video_frame_stride=20,
        max_frames_per_video=2, tracking_uri=tracking_uri, storage_path=str(tmp_path / "ray"),
    )  # fmt: skip
    summary = train_classifier(str(_subset_manifest(tmp_path)), str(tmp_path / "m.pt"), cfg)
    assert summary["train_items"] == 10  # images only: video frames are off by default

    # A linear head on ImageNet features separates a dozen training items; from scratch it cannot.
    assert summary["map"] > 0.9, summary["per_class_ap"]
    model, model_cfg, _ = load_classifier(str(tmp_path / "m.pt"))
    assert model_cfg.backbone == "efficientnet_lite0"
    weights = load_payload(str(tmp_path / "m.pt"))["backbone_weights"]
    assert weights["sha256"] == sha256_of_file(weights_path("efficientnet_lite0"))
    run = MlflowClient(tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.params["weights_sha256"] == weights["sha256"]
    assert run.data.params["finetune"] == "head"
    assert {"features_s", "head_fit_s", "train_map"} <= set(run.data.metrics)
