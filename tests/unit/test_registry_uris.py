"""Loading a models:/ URI must not leave MLflow's process-wide URIs pointing at its registry."""

from __future__ import annotations

import os

import mlflow
from mlflow.tracking._model_registry import utils as registry_utils

from pipeline.tracking.registry import _global_mlflow_uris


def test_global_uris_and_environment_are_restored(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///user-choice.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = registry_utils._registry_uri, mlflow.get_tracking_uri()
    inside = f"sqlite:///{tmp_path / 'other.db'}"
    with _global_mlflow_uris(inside):
        assert mlflow.get_registry_uri() == inside and mlflow.get_tracking_uri() == inside
    assert (registry_utils._registry_uri, mlflow.get_tracking_uri()) == before
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///user-choice.db"
    assert "MLFLOW_REGISTRY_URI" not in os.environ
