"""Small MLflow helpers shared by the trainers (call them from rank 0 only).

MLflow 3 refuses the file store, so the default tracking uri is a local sqlite database; a relative
sqlite path is made absolute on the driver so that Ray workers (whose working directory may differ)
write to the same database. Artifacts of a local sqlite store go to `mlartifacts/` beside it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from typing import Any

import mlflow

from pipeline import storage
from pipeline.config import flatten

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SQLITE = "sqlite:///"


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking uri with a relative sqlite path made absolute (other uris unchanged)."""
    uri = uri or DEFAULT_TRACKING_URI
    if uri.startswith(SQLITE):
        path = uri[len(SQLITE) :]
        if not path.startswith("/"):
            return SQLITE + os.path.abspath(path)
    return uri


def default_artifact_location(tracking_uri: str) -> str | None:
    """`<db folder>/mlartifacts` for a local sqlite store; None (the server decides) otherwise."""
    if not tracking_uri.startswith(SQLITE):
        return None
    folder = os.path.dirname(tracking_uri[len(SQLITE) :]) or os.getcwd()
    return os.path.join(folder, "mlartifacts")


def start_run(
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None = None,
    artifact_location: str | None = None,
) -> mlflow.ActiveRun:
    """Start (and return) an MLflow run in the experiment, creating the experiment if needed."""
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = artifact_location or default_artifact_location(uri)
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name)


def config_params(config: Any, prefix: str = "") -> dict[str, str]:
    """A (nested) dataclass as flat {"a.b": "value"} strings, as MLflow params want them."""
    return {key: str(value) for key, value in flatten(config, prefix).items()}


def log_config(config: Any, prefix: str = "") -> None:
    mlflow.log_params(config_params(config, prefix))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log the numeric entries of metrics (others are skipped)."""
    numeric = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    mlflow.log_metrics(numeric, step=step)


def log_file(uri: str, artifact_path: str | None = None) -> None:
    """Log a local or s3:// file as a run artifact, keeping its file name."""
    name = posixpath.basename(uri.rstrip("/"))
    with storage.local_copy(uri) as path, tempfile.TemporaryDirectory() as folder:
        named = os.path.join(folder, name)
        shutil.copyfile(path, named)
        mlflow.log_artifact(named, artifact_path=artifact_path)
