"""One MLflow tracking-location rule for every command, run names and tags, and the driver-side
logging of pseudo-label and evaluate, against real local sqlite stores (no mocks)."""

from __future__ import annotations

import json
import logging
import os

import pytest
from mlflow import MlflowClient

from pipeline.predict_run import with_tracking_uri
from pipeline.settings import PredictConfig
from pipeline.tracking import registry
from pipeline.tracking import runs as tracking
from pipeline.train.common import state_uri
from pipeline.train.config import ClassifierTrainConfig, SegmenterTrainConfig


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


def test_explicit_wins_over_the_environment_and_a_relative_sqlite_path_is_made_absolute(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.tracking_uri_for("http://given:5000", str(tmp_path)) == "http://given:5000"
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri_for("sqlite:///rel.db", None) == f"sqlite:///{tmp_path}/rel.db"


def test_environment_wins_over_the_output_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.tracking_uri_for(None, str(tmp_path / "out")) == "http://env:5000"


def test_a_folder_output_holds_the_store_a_model_file_and_a_label_set_have_it_beside(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri_for(None, "seg") == f"sqlite:///{tmp_path}/seg/mlflow.db"
    assert tracking.tracking_uri_for(None, "seg/") == f"sqlite:///{tmp_path}/seg/mlflow.db"
    for model in ("models/classifier.pt", "models/c.pth", f"file://{tmp_path}/models/c.pt"):
        assert tracking.tracking_uri_for(None, model) == f"sqlite:///{tmp_path}/models/mlflow.db"
    labels = tracking.tracking_uri_for(None, "work/labels", artifact=True)
    assert labels == f"sqlite:///{tmp_path}/work/mlflow.db"


def test_a_remote_output_falls_back_to_the_current_folder_and_says_so_once(
    monkeypatch, tmp_path, caplog
):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="pipeline.tracking.runs"):
        uri = tracking.tracking_uri_for(None, "s3://bucket/models/c.pt")
    assert uri == f"sqlite:///{tmp_path}/mlflow.db"
    said = [r for r in caplog.records if r.name == "pipeline.tracking.runs"]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert (
        str(tmp_path) in said[0].getMessage() and "s3://bucket/models/c.pt" in said[0].getMessage()
    )
    caplog.clear()
    assert tracking.tracking_uri_for(None, None, announce=False).endswith("/mlflow.db")
    assert not caplog.records
    assert not (tmp_path / "mlflow.db").exists()  # the rule only names the store


def test_config_defaults_apply_the_rule_and_ray_state_goes_beside_the_model():
    assert ClassifierTrainConfig().tracking_uri is None
    assert SegmenterTrainConfig().tracking_uri is None
    assert PredictConfig().tracking_uri is None
    assert ClassifierTrainConfig().storage_path is None
    assert state_uri("out/classifier.pt") == "out/classifier.pt.train"
    assert state_uri("s3://b/seg") == "s3://b/seg/train"


def test_predict_resolves_a_store_only_for_mlflow_model_uris(tmp_path):
    out = str(tmp_path / "pred")
    assert with_tracking_uri(PredictConfig(), str(tmp_path / "m.pt"), out).tracking_uri is None
    resolved = with_tracking_uri(PredictConfig(), "models:/seg@candidate", out).tracking_uri
    assert resolved == f"sqlite:///{tmp_path}/mlflow.db"


def test_run_names_and_tags():
    assert tracking.run_name("train-classifier", "out/classifier.pt") == (
        "train-classifier classifier.pt"
    )
    assert tracking.run_name("train-segmenter", "s3://b/segmenter/") == "train-segmenter segmenter"
    tags = tracking.run_tags("pseudo-label", "s3://b/coll", None, {"webseg.labels": "labels"})
    assert tags["webseg.command"] == "pseudo-label" and tags["webseg.collection"] == "s3://b/coll"
    assert tags["webseg.code_version"] and "webseg.model_uri" not in tags
    assert tags["webseg.labels"] == os.path.abspath("labels")  # local paths named from anywhere
    assert tracking.run_tags("x", None, "models:/m@a")["webseg.model_uri"] == "models:/m@a"


def test_a_training_run_is_named_and_tagged_in_a_real_store(tmp_path):
    uri = tracking.tracking_uri_for(None, str(tmp_path / "segmenter"))
    tags = tracking.run_tags("train-segmenter", "s3://b/coll", str(tmp_path / "segmenter"))
    record = str(tmp_path / "segmenter" / "train" / "mlflow_run.json")
    run_id = registry.get_or_create_run(
        uri, "webseg-segmenter", record, tracking.run_name("train-segmenter", "segmenter"), tags
    )
    assert (tmp_path / "segmenter" / "mlflow.db").is_file()
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.run_name == "train-segmenter segmenter"
    assert run.data.tags["webseg.command"] == "train-segmenter"
    assert run.data.tags["webseg.collection"] == "s3://b/coll"
    assert run.data.tags["webseg.model_uri"] == str(tmp_path / "segmenter")
    assert "webseg.code_version" in run.data.tags
    again = registry.get_or_create_run(uri, "webseg-segmenter", record, "other name", tags)
    assert again == run_id  # a resumed training continues its run


def _label_set(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    info = {
        "collection": "my-collection",
        "model_uri": "models/classifier.pt",
        "items": 3,
        "counts": {"rows": 4, "status": {"labelled": 3, "failed": 1}, "failed_reasons": {}},
        "rows_this_run": 4,
        "stage_seconds": {"decode": 1.5, "cam": 2.25},
        "wall_seconds": 7.5,
    }
    (labels / "run.json").write_text(json.dumps(info))
    return labels, info


def test_pseudo_label_logs_counts_timings_and_run_json_and_evaluate_adds_its_scores(tmp_path):
    labels, info = _label_set(tmp_path)
    run_id = tracking.log_pseudo_label(str(labels), info)
    assert run_id and info["mlflow_run_id"] == run_id
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # beside the label set, not inside it
    assert not (labels / "mlflow.db").exists() and info["mlflow_tracking_uri"] == uri
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "pseudo-label labels" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["status.labelled"] == 3 and metrics["status.failed"] == 1
    assert metrics["stage_seconds.cam"] == 2.25 and metrics["wall_seconds"] == 7.5
    assert run.data.tags["webseg.labels"] == str(labels)
    assert run.data.tags["webseg.model_uri"] == os.path.abspath("models/classifier.pt")
    assert run.data.tags["webseg.command"] == "pseudo-label"
    assert [a.path for a in client.list_artifacts(run_id)] == ["run.json"]
    assert json.loads((labels / "run.json").read_text())["mlflow_run_id"] == run_id

    result = {"image_miou": 41.2, "mean_video_j": 30.5, "frame_miou": None,
              "per_class_iou": {"a cat": 50.0}, "videos": {"v/1": {"j": 12.5}}}  # fmt: skip
    assert tracking.log_evaluation(str(labels), "s3://b/gt", result) == run_id
    metrics = client.get_run(run_id).data.metrics
    assert metrics["eval.image_miou"] == 41.2 and metrics["eval.mean_video_j"] == 30.5
    assert metrics["eval.iou.a cat"] == 50.0 and metrics["eval.video_j.v/1"] == 12.5
    assert "eval.frame_miou" not in metrics
    assert client.get_run(run_id).data.tags["webseg.eval_collection"] == "s3://b/gt"


def test_an_explicit_store_is_used_and_found_again_by_evaluate(tmp_path):
    labels, info = _label_set(tmp_path)
    uri = f"sqlite:///{tmp_path}/elsewhere/store.db"
    run_id = tracking.log_pseudo_label(str(labels), info, uri)
    assert run_id and not (tmp_path / "mlflow.db").exists()
    assert tracking.log_evaluation(str(labels), "c", {"image_miou": 1.0}) == run_id
    assert MlflowClient(uri).get_run(run_id).data.metrics["eval.image_miou"] == 1.0


def test_tracking_failures_are_one_warning_never_an_error(tmp_path, caplog):
    labels, info = _label_set(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.INFO, logger="pipeline.tracking.runs"):
        assert tracking.log_pseudo_label(str(labels), info, f"sqlite:///{blocker}/x.db") is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "pseudo-label run not logged" in warnings[0].getMessage()
    assert "mlflow_run_id" not in json.loads((labels / "run.json").read_text())


def test_evaluate_without_a_recorded_or_findable_run_logs_nothing_and_says_nothing(
    tmp_path, caplog
):
    labels, info = _label_set(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        assert tracking.log_evaluation(str(labels), "c", {"image_miou": 1.0}) is None  # no run id
        assert tracking.log_evaluation(str(tmp_path / "none"), "c", {}) is None  # no run.json
        recorded = {**info, "mlflow_run_id": "0" * 32,
                    "mlflow_tracking_uri": f"sqlite:///{tmp_path}/gone.db"}  # fmt: skip
        (labels / "run.json").write_text(json.dumps(recorded))
        assert tracking.log_evaluation(str(labels), "c", {"image_miou": 1.0}) is None
    assert not caplog.records
    assert not (tmp_path / "gone.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_mlflow_model_uri_not_in_the_store_names_the_way_to_point_at_it(tmp_path):
    missing = f"sqlite:///{tmp_path}/missing.db"
    with pytest.raises(registry.ModelNotFoundError, match="--tracking-uri or set MLFLOW_TRA"):
        registry.load_segmenter("models:/seg@candidate", tracking_uri=missing)
    assert not (tmp_path / "missing.db").exists()  # looking did not create an empty store
    empty = f"sqlite:///{tmp_path}/empty.db"
    registry.ensure_experiment(empty, "x")
    with pytest.raises(registry.ModelNotFoundError, match="--tracking-uri or set MLFLOW_TRA"):
        registry.load_segmenter("models:/seg@candidate", tracking_uri=empty)


def test_a_classifier_is_registered_in_its_store_and_serves_through_pyfunc(tmp_path):
    """What the demo does after training: register the run's classifier as NAME@candidate."""
    import mlflow
    import numpy as np
    import torch

    from pipeline.checkpoint import save_model
    from pipeline.models.classifier import CamClassifier
    from pipeline.models.config import ModelConfig

    cfg = ModelConfig(backbone="resnet", depth=18, width=8, num_classes=2)
    torch.manual_seed(0)
    model_file = save_model(CamClassifier(cfg), cfg, str(tmp_path / "model" / "classifier.pt"),
                            ["background", "cat", "dog"])  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = MlflowClient(uri).create_run(registry.ensure_experiment(uri, "c")).info.run_id
    registered = registry.register_classifier(uri, run_id, model_file, "webseg-demo-classifier")
    assert registered["model_uri"] == "models:/webseg-demo-classifier@candidate"
    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("webseg-demo-classifier", "candidate")
    assert str(version.version) == registered["version"] and version.run_id == run_id
    assert "MLFLOW_TRACKING_URI" not in os.environ  # nothing leaked to the process
    with registry._global_mlflow_uris(uri):
        served = mlflow.pyfunc.load_model(registered["model_uri"])
    scores = served.predict([np.zeros((40, 60, 3), np.uint8)])
    assert set(scores[0]) == {"cat", "dog"} and all(0 <= v <= 1 for v in scores[0].values())
