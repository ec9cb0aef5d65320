"""Models in MLflow: one run per training, model logging, registration, aliases, loading.

A segmenter checkpoint is a pipeline.checkpoint file whose model_config is a DeepLabConfig. It is
logged as an MLflow pyfunc model holding that file (`artifacts/model.pt`); loading never unpickles
code: `load_segmenter` accepts a file/folder URI, `runs:/...` or `models:/NAME@ALIAS`. A classifier
checkpoint is logged and registered the same way (`register_classifier`, used by the demo).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from pipeline import checkpoint, storage
from pipeline.models.classifier import normalize
from pipeline.models.config import DeepLabConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.models.inference import segment
from pipeline.tracking import runs as tracking
from pipeline.train.config import checkpoint_eval_side

log = logging.getLogger(__name__)
CANDIDATE = "candidate"
MODEL_ARTIFACT = "model"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


class ModelNotFoundError(LookupError):
    """A models:/ (runs:/ ...) URI the tracking store does not hold."""


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (artifacts beside a local sqlite store) if missing."""
    tracking.prepare_store(tracking_uri)
    return tracking.experiment_id(MlflowClient(tracking_uri), tracking_uri, name)


def get_or_create_run(
    tracking_uri: str,
    experiment: str,
    record_uri: str,
    run_name: str,
    tags: dict[str, str] | None = None,
) -> str:
    """The MLflow run id recorded at record_uri (a resumed training), else a new run recorded there.

    Keeps one MLflow run per training even when the driver was killed before any checkpoint.
    """
    client = MlflowClient(tracking.prepare_store(tracking_uri))
    if storage.exists(record_uri):
        run_id = json.loads(storage.read_text(record_uri))["run_id"]
        try:
            client.get_run(run_id)
            return run_id
        except mlflow.exceptions.MlflowException:
            log.warning(
                "recorded MLflow run %s not found on %s: starting a new run", run_id, tracking_uri
            )
    run = client.create_run(
        ensure_experiment(tracking_uri, experiment), run_name=run_name, tags=tags
    )
    storage.write_text(
        record_uri, json.dumps({"run_id": run.info.run_id, "tracking_uri": tracking_uri})
    )
    return run.info.run_id


class SegmenterPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict(list of HxWx3 uint8 RGB) -> list of HxW uint8 class masks."""

    # predict is untyped on purpose (MLflow cannot describe a list of image arrays); without this,
    # MLflow's PythonModel.__init_subclass__ warns "add type hints" on every import of this module
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.model, self.info = load_segmenter_file(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):  # untyped: MLflow validates typed inputs
        side = checkpoint_eval_side(self.info)
        return [segment(self.model, np.asarray(image, np.uint8), side) for image in model_input]


class ClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict(list of HxWx3 uint8 RGB) -> list of {tag: probability}; the image
    is squashed to params["size"] (default 320) square."""

    _skip_type_hint_validation = True  # as SegmenterPyfunc

    def load_context(self, context: Any) -> None:
        self.model, _, classes = checkpoint.load_classifier(context.artifacts["checkpoint"])
        self.tags = list(classes[1:])  # classes include background

    def predict(self, context, model_input, params=None):  # untyped: as SegmenterPyfunc
        # deferred: loads torch/Ray/MLflow only for the commands that use them
        import cv2


        size = int((params or {}).get("size") or 320)
        out = []
        for image in model_input:
            square = cv2.resize(np.asarray(image, np.uint8), (size, size))
            x = normalize(torch.from_numpy(np.ascontiguousarray(square))[None],
                          self.model.input_stats)  # fmt: skip
            with torch.inference_mode():
                scores = torch.sigmoid(self.model(x))[0].tolist()
            out.append(dict(zip(self.tags, scores, strict=True)))
        return out


def log_checkpoint_model(
    model_file: str, registered_name: str, python_model: Any, alias: str = CANDIDATE
) -> dict[str, Any]:
    """Log model_file (local) as the active run's pyfunc model, register it, point alias at it.

    Returns {"model_uri": "models:/NAME@ALIAS", "version": str, "logged_uri": "models:/m-..."}.
    """
    with _mlflow_quiet():
        info = _log_pyfunc(model_file, registered_name, python_model)
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(registered_name, alias, version)
    return {
        "model_uri": f"models:/{registered_name}@{alias}",
        "version": version,
        "logged_uri": info.model_uri,
    }


@contextlib.contextmanager
def _mlflow_quiet() -> Iterator[None]:
    """MLflow prints while it logs a model (a CloudPickle warning, a download bar, "Successfully
    registered model"): WebSeg reports the registered URI itself."""
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        mlflow_logger.setLevel(level)


def _log_pyfunc(model_file: str, registered_name: str, python_model: Any) -> Any:
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=python_model,
        artifacts={"checkpoint": model_file},
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"mlflow=={mlflow.__version__}",
        ],
        registered_model_name=registered_name,
    )


def log_segmenter(model_file: str, registered_name: str, alias: str = CANDIDATE) -> dict[str, Any]:
    """Log a segmenter checkpoint file as the active run's model and register it (see above)."""
    return log_checkpoint_model(model_file, registered_name, SegmenterPyfunc(), alias)


def register_classifier(
    tracking_uri: str, run_id: str, model_uri: str, registered_name: str, alias: str = CANDIDATE
) -> dict[str, Any]:
    """Log the classifier checkpoint at model_uri as run run_id's pyfunc model and register it as
    registered_name@alias in that store's registry; returns log_checkpoint_model's dict."""
    with (
        storage.local_copy(checkpoint.model_file_uri(model_uri)) as local,
        _global_mlflow_uris(tracking_uri),
        mlflow.start_run(run_id=run_id),
    ):
        registered = log_checkpoint_model(local, registered_name, ClassifierPyfunc(), alias)
        mlflow.set_tag("webseg.registered_model_uri", registered["model_uri"])
    return registered


def load_segmenter_file(uri: str, device: str = "cpu") -> tuple[DeepLabV3, dict[str, Any]]:
    """(model in eval mode, checkpoint info: classes, model_config, eval_long_side, ...)."""
    payload = checkpoint.load_payload(uri, device)
    model = DeepLabV3(checkpoint.config_from_dict(payload["model_config"], DeepLabConfig))
    model.load_state_dict(payload["state_dict"])
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer", "scaler")}
    info["classes"] = tuple(payload.get("classes") or ())
    info["file_sha256"] = hashlib.sha256(
        storage.read_bytes(checkpoint.model_file_uri(uri))
    ).hexdigest()
    return model.to(device).eval(), info


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def _global_mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at uri, then put back exactly what
    was there: a leaked registry URI would redirect every later MlflowClient(tracking_uri) of the
    process, and the setters also write MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into the
    environment."""

    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    saved_env = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_segmenter(
    uri: str, tracking_uri: str | None = None, device: str = "cpu"
) -> tuple[DeepLabV3, dict]:
    """Load a segmenter from a checkpoint file/folder URI or an MLflow URI (models:/NAME@ALIAS)."""
    if not uri.startswith(MLFLOW_SCHEMES):
        return load_segmenter_file(uri, device)
    registry = tracking.resolve_tracking_uri(tracking_uri)  # the registry lives with the runs
    hint = f"{tracking.HINT} to the store {uri} was registered in"
    if not tracking.store_exists(registry):  # opening it would create an empty store
        raise ModelNotFoundError(f"{hint}: there is no MLflow store at {registry}")
    with tempfile.TemporaryDirectory() as folder:
        try:
            with _global_mlflow_uris(registry):  # models:/ resolution ignores the arguments below
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=folder, tracking_uri=registry, registry_uri=registry
                )
        except mlflow.exceptions.MlflowException as error:
            raise ModelNotFoundError(f"{hint}: not found in {registry} ({error})") from error
        found = sorted(glob.glob(os.path.join(local, "**", checkpoint.MODEL_FILE), recursive=True))
        if not found:
            raise FileNotFoundError(f"{uri} holds no {checkpoint.MODEL_FILE}")
        return load_segmenter_file(found[0], device)
