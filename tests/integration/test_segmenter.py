"""Segmenter end to end against a real MLflow server: train, register, predict, kill and resume.

The label set is built from a generated collection's gt (a stand-in for pseudo-labels).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import schema
from pipeline.evaluate.score import evaluate_labels
from pipeline.output import write_manifest, write_run_json
from pipeline.sample_data import generate

sys.path.insert(0, str(Path(__file__).parent))
from mlflow_server import MlflowServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = {  # a tiny scratch ResNet for speed (the EfficientNet path: test_deeplab_backbones.py)
    "model": {"backbone": "resnet", "width": 8, "aspp_channels": 16},
    "pretrained": "none",
    "batch_size": 4,
    "crop_size": 64,
    "store_size": 96,
    "eval_long_side": 96,
    "cpus_per_worker": 0.5,
    "lr": 0.01,
    "preview_items": 2,
}


def make_label_set(collection: str, out: Path, frame_step: int = 4) -> str:
    """A label set whose masks are the collection's gt: every image, every frame_step-th frame."""
    rows = []
    for line in Path(collection, "manifest.jsonl").read_text().splitlines():
        item = json.loads(line)
        gt = Path(collection, "gt", item["id"])
        frames = (
            [None]
            if item["kind"] == "image"
            else sorted(int(p.stem) for p in gt.iterdir())[::frame_step]
        )
        for frame in frames:
            relative = schema.mask_path(item["id"], frame)
            source = Path(collection, schema.mask_path(item["id"], frame, "gt"))
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_bytes(source.read_bytes())
            rows.append(
                {
                    schema.ID: item["id"],
                    schema.URI: item["uri"],
                    schema.KIND: item["kind"],
                    schema.TAGS: item["tags"],
                    schema.FRAME_INDEX: frame,
                    schema.STATUS: schema.LABELLED,
                    schema.MASK_URI: relative,
                    schema.SCORES: "{}",
                    schema.SOURCE_INDEX: len(rows),
                    schema.GROUP: item["id"],
                }
            )
    write_manifest(str(out), rows)
    write_run_json(str(out), {"collection": collection})
    return str(out)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    collection = generate(str(tmp_path_factory.mktemp("coll")), images=8, videos=1)
    return collection, make_label_set(collection, tmp_path_factory.mktemp("labels"))


def test_train_registers_candidate_and_predict_loads_it(
    server, data, tmp_path, ray_session, caplog
):
    import logging

    from mlflow.tracking import MlflowClient

    from pipeline.collection import load_label_space
    from pipeline.config import from_dict
    from pipeline.predict_run import run_predict
    from pipeline.settings import PredictConfig
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter import train_segmenter

    collection, labels = data
    cfg = from_dict(
        SegmenterTrainConfig,
        {
            **TINY,
            "epochs": 2,
            "class_weighting": "median_frequency",  # off by default; its artifact is checked
            "val_collection": collection,
            "tracking_uri": server.uri,
            "experiment": "seg-train",
            "registered_model_name": "seg-test",
        },
    )
    with caplog.at_level(logging.INFO, logger="pipeline.train.segmenter"):
        result = train_segmenter(labels, str(tmp_path / "model"), cfg)
    assert "segmenter data: cached" in caplog.text  # a few MB: auto caches on any cluster
    assert result["epochs"] == 2 and 0.0 <= result["val_miou"] <= 1.0
    assert result["registered_model_uri"] == "models:/seg-test@candidate"
    client = MlflowClient(server.uri)
    assert client.get_model_version_by_alias("seg-test", "candidate").version == result["version"]
    run = client.get_run(result["mlflow_run_id"])
    assert {"loss", "lr", "val_miou"} <= set(run.data.metrics) and run.data.params["epochs"] == "2"
    assert run.data.params["weights_origin"] == "none" and result["backbone_weights"] is None
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_miou")] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.json",
        "confusion_matrix.json",
        "preview_image_pseudolabel_prediction.png",
        "class_weights.json",
    } <= artifacts
    weights = client.download_artifacts(run.info.run_id, "class_weights.json", str(tmp_path))
    recorded = json.loads(Path(weights).read_text())
    assert recorded["method"] == "median_frequency"
    assert list(recorded["weights"]) == list(load_label_space(collection))
    assert (tmp_path / "model" / "model.pt").exists()
    _assert_label_pixels_recorded(str(tmp_path / "model"), labels, len(recorded["weights"]))

    out = tmp_path / "pred"
    from mlflow.tracking._model_registry import utils as registry_utils

    before = registry_utils._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI")
    run_predict(
        "models:/seg-test@candidate", collection, str(out), PredictConfig(tracking_uri=server.uri)
    )
    after = registry_utils._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI")
    assert after == before  # no process-wide registry leaked to later MlflowClient(tracking_uri)
    scores = evaluate_labels(str(out), collection)
    assert (
        scores["images_scored"] == 8 and scores["missing"] == 0 and scores["image_miou"] is not None
    )
    _assert_pyfunc_matches_predict("models:/seg-test@candidate", server.uri)


def _assert_label_pixels_recorded(model_uri: str, labels: str, num_classes: int) -> None:
    """The checkpoint carries the training masks' pixel counts (counted by Ray Data tasks) that
    predict's presence prior shift needs: the same as counting the masks one by one."""
    from pipeline.checkpoint import load_payload
    from pipeline.train.class_weights import class_pixel_counts
    from pipeline.train.segmenter_data import read_label_set, training_masks

    sources, _, _ = read_label_set(labels, 0.0)
    pixels, image_pixels = class_pixel_counts(training_masks(sources), num_classes)
    recorded = load_payload(model_uri)["label_pixels"]
    assert recorded == {"pixels": pixels.tolist(), "image_pixels": image_pixels.tolist()}
    assert sum(recorded["pixels"]) > 0


def _assert_pyfunc_matches_predict(model_uri: str, tracking_uri: str) -> None:
    """The registered model also serves through plain MLflow (mlflow.pyfunc), with our masks."""
    import mlflow
    import numpy as np

    from pipeline.models.inference import segment
    from pipeline.tracking.registry import _global_mlflow_uris, load_segmenter

    with _global_mlflow_uris(tracking_uri):
        served = mlflow.pyfunc.load_model(model_uri)
    model, info = load_segmenter(model_uri, tracking_uri=tracking_uri)
    images = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(2)]
    masks = served.predict(images)
    side = int(info.get("eval_long_side") or 512)
    assert len(masks) == 2 and masks[0].shape == (48, 64) and masks[0].dtype == np.uint8
    for image, mask in zip(images, masks, strict=True):
        np.testing.assert_array_equal(mask, segment(model, image, side))


def _train_command(labels: str, out: Path, config: Path, server: MlflowServer) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "--json",
        "train-segmenter",
        "--labels",
        labels,
        "--out",
        str(out),
        "--config",
        str(config),
        "--tracking-uri",
        server.uri,
        "--ray-address",
        "local",
        "--epochs",
        "3",
    ]


def test_killed_run_resumes_into_the_same_mlflow_run(server, data, tmp_path):
    from mlflow.tracking import MlflowClient

    _, labels = data
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "segmenter": {
                    **TINY,
                    "experiment": "seg-resume",
                    "registered_model_name": "seg-resume",
                }
            }
        )
    )
    out = tmp_path / "model"
    snapshot = out / "train" / "segmenter" / "checkpoint_manager_snapshot.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 (closed after the kill)
    first = subprocess.Popen(
        _train_command(labels, out, config, server),
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 600  # Ray start-up and a first epoch: minutes on a loaded box
    while not snapshot.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    tail = (tmp_path / "first.log").read_text(errors="replace")[-3000:]
    assert snapshot.exists() and first.poll() is None, f"no checkpoint before exit/timeout: {tail}"
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
    first.wait(timeout=30)
    log.close()

    second = subprocess.run(
        [*_train_command(labels, out, config, server), "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout[second.stdout.index("{") :])
    assert result["epochs"] == 3
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("seg-resume")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == result["mlflow_run_id"]
    steps = [m.step for m in client.get_metric_history(result["mlflow_run_id"], "loss")]
    assert sorted(set(steps)) == [0, 1, 2] and steps.count(0) == 1  # epoch 0 was not trained twice
    assert client.get_model_version_by_alias("seg-resume", "candidate").version == result["version"]


@pytest.mark.parametrize("workers", [1, 2])
def test_one_config_trains_one_model(server, data, tmp_path, ray_session, workers):
    """Ray Data hands blocks on as they finish unless told to keep their order: two runs of one
    config (same seed) then trained on different orders and gave different weights. With two
    workers the ordered stream is split between them (streaming_split) the same way each run."""
    import torch

    from pipeline.config import from_dict
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter import train_segmenter

    _, labels = data
    cfg = from_dict(
        SegmenterTrainConfig,
        {**TINY, "epochs": 1, "workers": workers, "tracking_uri": server.uri},
    )
    weights = []
    for run in ("a", "b"):
        train_segmenter(labels, str(tmp_path / run), cfg)
        checkpoint = torch.load(tmp_path / run / "model.pt", map_location="cpu", weights_only=False)
        weights.append(checkpoint["state_dict"])
    tensors = [k for k, v in weights[0].items() if torch.is_tensor(v)]
    assert len(tensors) > 10
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in tensors)
