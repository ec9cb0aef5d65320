"""Small MLflow helpers: where runs go (one rule for every command), run names and tags, and the
driver-side logging of pseudo-label and evaluate (trainers call the rest from rank 0 only).

Where: `tracking_uri_for(explicit, out_uri)`: the --tracking-uri / config value, else env
MLFLOW_TRACKING_URI, else a sqlite store beside the command's output (`<out folder>/mlflow.db`;
the parent folder of a .pt/.pth file or of a label set), else, for an s3:// output,
`<cwd>/mlflow.db` with one INFO line saying so. MLflow 3 refuses the file store, hence sqlite; a
relative sqlite path is made absolute on the driver so that Ray workers (whose working directory
may differ) write to the same database. Artifacts of a local sqlite store go to `mlartifacts/`
beside it. mlflow itself is imported lazily: the rule and a command with nothing to log stay cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline import schema, storage
from pipeline.config import flatten
from pipeline.labelset_guard import code_version
from pipeline.output import write_run_json

if TYPE_CHECKING:
    import mlflow
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"
DB_NAME = "mlflow.db"
ENV = "MLFLOW_TRACKING_URI"
HINT = f"pass --tracking-uri or set {ENV}"
PSEUDO_LABEL_EXPERIMENT = "webseg-pseudo-label"
TAG_COMMAND, TAG_COLLECTION = "webseg.command", "webseg.collection"
TAG_CODE_VERSION, TAG_MODEL_URI = "webseg.code_version", "webseg.model_uri"
TAG_LABELS = "webseg.labels"


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking uri with a relative sqlite path made absolute (other uris unchanged); None
    applies the rule without an output (env, else `<cwd>/mlflow.db`, said once at INFO)."""
    if not uri:
        return tracking_uri_for(None, None)
    if uri.startswith(SQLITE):
        path = uri[len(SQLITE) :]
        if not path.startswith("/"):
            return SQLITE + os.path.abspath(path)
    return uri


def output_folder(out_uri: str, artifact: bool = False) -> str | None:
    """The local folder a command's output lives in: out_uri itself when it is a folder, its parent
    when it is a .pt/.pth file or `artifact` (a label set: the store goes beside it, not inside);
    None for a remote output."""
    if storage.is_remote(out_uri):
        return None
    path = os.path.abspath(out_uri.removeprefix("file://").rstrip("/") or "/")
    if artifact or path.endswith((".pt", ".pth")):
        return os.path.dirname(path)
    return path


def tracking_uri_for(
    explicit: str | None, out_uri: str | None, *, artifact: bool = False, announce: bool = True
) -> str:
    """Where a command's MLflow runs go: explicit (--tracking-uri / config), else env
    MLFLOW_TRACKING_URI, else `sqlite:///<output folder>/mlflow.db` (see output_folder; artifact:
    the output is a label set, its store goes beside it), else (an s3:// or no output)
    `sqlite:///<cwd>/mlflow.db`, said in one INFO line unless announce is False."""
    if explicit:
        return resolve_tracking_uri(explicit)
    if os.environ.get(ENV):
        return resolve_tracking_uri(os.environ[ENV])
    folder = output_folder(out_uri, artifact) if out_uri else None
    if folder is not None:
        return SQLITE + os.path.join(folder, DB_NAME)
    uri = SQLITE + os.path.join(os.getcwd(), DB_NAME)
    if announce:
        where = f"--out {out_uri} is not a local path" if out_uri else "no output folder"
        log.info("MLflow runs go to %s (%s; %s to choose)", uri, where, HINT)
    return uri


def sqlite_path(tracking_uri: str) -> str | None:
    """The database file of a sqlite tracking uri; None for other stores."""
    return tracking_uri[len(SQLITE) :] if tracking_uri.startswith(SQLITE) else None


def store_exists(tracking_uri: str) -> bool:
    """False when a sqlite store's file is missing (opening it would create an empty one)."""
    path = sqlite_path(tracking_uri)
    return path is None or os.path.isfile(path)


def prepare_store(tracking_uri: str) -> str:
    """Create a local sqlite store's folder (sqlite will not); returns the uri."""
    path = sqlite_path(tracking_uri)
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return tracking_uri


def default_artifact_location(tracking_uri: str) -> str | None:
    """`<db folder>/mlartifacts` for a local sqlite store; None (the server decides) otherwise."""
    if not tracking_uri.startswith(SQLITE):
        return None
    folder = os.path.dirname(tracking_uri[len(SQLITE) :]) or os.getcwd()
    return os.path.join(folder, "mlartifacts")


def run_name(command: str, out_uri: str) -> str:
    """`<command> <last part of the output>`, e.g. `train-classifier classifier.pt`."""
    return f"{command} {posixpath.basename(out_uri.rstrip('/')) or out_uri}"


def run_tags(
    command: str,
    collection: str | None = None,
    model_uri: str | None = None,
    extra: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """webseg.command / collection / code_version / model_uri (+ extra) tags; None values left out."""

    tags = {
        TAG_COMMAND: command,
        TAG_COLLECTION: located(collection),
        TAG_CODE_VERSION: code_version(),
        TAG_MODEL_URI: located(model_uri),
        **{k: located(v) for k, v in (extra or {}).items()},
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def located(uri: str | None) -> str | None:
    """A local path made absolute (a tag must name it from anywhere); URIs with a scheme
    (s3://, models:/, file://) unchanged."""
    if not uri or ":/" in uri:
        return uri
    return os.path.abspath(uri)


def start_run(
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None = None,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> mlflow.ActiveRun:
    """Start (and return) an MLflow run in the experiment, creating the experiment if needed.
    Sets MLflow's process-wide tracking uri: for Ray Train workers, not for the driver."""
    # deferred: loads MLflow only when a run is logged or a model looked up
    import mlflow

    uri = prepare_store(resolve_tracking_uri(tracking_uri))
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = artifact_location or default_artifact_location(uri)
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)


def config_params(config: Any, prefix: str = "") -> dict[str, str]:
    """A (nested) dataclass as flat {"a.b": "value"} strings, as MLflow params want them."""
    return {key: str(value) for key, value in flatten(config, prefix).items()}


def log_config(config: Any, prefix: str = "") -> None:
    # deferred: loads MLflow only when a run is logged or a model looked up
    import mlflow

    mlflow.log_params(config_params(config, prefix))


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The int/float (not bool) entries of metrics as floats."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log the numeric entries of metrics (others are skipped)."""
    # deferred: loads MLflow only when a run is logged or a model looked up
    import mlflow

    mlflow.log_metrics(numeric(metrics), step=step)


def log_file(uri: str, artifact_path: str | None = None) -> None:
    """Log a local or s3:// file as a run artifact, keeping its file name."""
    # deferred: loads MLflow only when a run is logged or a model looked up
    import mlflow

    with named_local_copy(uri) as named:
        mlflow.log_artifact(named, artifact_path=artifact_path)


@contextlib.contextmanager
def named_local_copy(uri: str) -> Iterator[str]:
    """A local copy of a local or s3:// file under its own file name (artifacts keep the name)."""
    name = posixpath.basename(uri.rstrip("/"))
    with storage.local_copy(uri) as path, tempfile.TemporaryDirectory() as folder:
        named = os.path.join(folder, name)
        shutil.copyfile(path, named)
        yield named


# ---- driver-side logging: explicit MlflowClient, never MLflow's process-wide uri -------------


def experiment_id(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (artifacts beside a local sqlite store) if missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri))


def _metric_key(key: str) -> str:
    """An MLflow-legal metric name (letters, digits, _ - . space /)."""
    return re.sub(r"[^\w\-. /]", "_", key)


def _log_batch(client: MlflowClient, run_id: str, metrics: dict[str, Any]) -> None:
    # deferred: loads MLflow only when a run is logged or a model looked up
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(_metric_key(k), v, now, 0) for k, v in numeric(metrics).items() if v == v]
    for start in range(0, len(batch), 500):  # MLflow's per-request limit is 1000
        client.log_batch(run_id, metrics=batch[start : start + 500])


def pseudo_label_metrics(info: dict[str, Any]) -> dict[str, float]:
    """run.json's counts per status, items, rows, stage_seconds and wall_seconds as metrics."""
    counts = info.get("counts") or {}
    metrics = {
        "items": info.get("items"),
        "rows": counts.get("rows"),
        "rows_this_run": info.get("rows_this_run"),
        "wall_seconds": info.get("wall_seconds"),
    }
    metrics.update({f"status.{k}": v for k, v in (counts.get("status") or {}).items()})
    metrics.update({f"stage_seconds.{k}": v for k, v in (info.get("stage_seconds") or {}).items()})
    return numeric({k: v for k, v in metrics.items() if v is not None})


def log_pseudo_label(
    out_uri: str, info: dict[str, Any], tracking_uri: str | None = None
) -> str | None:
    """One MLflow run for a finished pseudo-label run (driver side): status counts and timings as
    metrics, run.json as artifact, webseg.* tags; its id goes into info and run.json as
    `mlflow_run_id`. Returns the run id; a tracking failure is one WARNING line, never an error."""

    uri = tracking_uri or out_uri
    try:
        # deferred: loads MLflow only when a run is logged or a model looked up
        from mlflow import MlflowClient

        uri = prepare_store(tracking_uri_for(tracking_uri, out_uri, artifact=True))
        client = MlflowClient(uri)
        tags = run_tags("pseudo-label", info.get("collection"), info.get("model_uri"),
                        {TAG_LABELS: out_uri})  # fmt: skip
        run = client.create_run(
            experiment_id(client, uri, PSEUDO_LABEL_EXPERIMENT),
            run_name=run_name("pseudo-label", out_uri),
            tags=tags,
        )
        run_id = run.info.run_id
        _log_batch(client, run_id, pseudo_label_metrics(info))
        info.update(mlflow_run_id=run_id, mlflow_tracking_uri=uri)
        write_run_json(out_uri, info)
        with named_local_copy(storage.join(out_uri, schema.RUN_NAME)) as path:
            client.log_artifact(run_id, path)
        client.set_terminated(run_id)
        log.info("MLflow run %s (%s) in %s", run_id, run.info.run_name, uri)
        return run_id
    except Exception as error:  # (tracking never fails the labelling)
        log.warning("MLflow: pseudo-label run not logged to %s: %s", uri, _short(error))
        return None


def evaluation_metrics(result: dict[str, Any]) -> dict[str, float]:
    """evaluate_labels' scores (percent, as its table) as `eval.*` metrics."""
    keys = ("image_miou", "image_miou_confident", "coverage", "frame_miou", "frame_coverage",
            "mean_video_j", "mean_video_j_relevant", "images_scored", "frames_scored", "missing")  # fmt: skip
    metrics = {f"eval.{k}": result.get(k) for k in keys}
    metrics.update({f"eval.iou.{c}": v for c, v in (result.get("per_class_iou") or {}).items()})
    for video, scores in (result.get("videos") or {}).items():
        metrics[f"eval.video_j.{video}"] = scores.get("j")
    return numeric({k: v for k, v in metrics.items() if v is not None})


def _recorded_run(labels_uri: str) -> dict[str, Any]:
    try:
        run = json.loads(storage.read_text(storage.join(labels_uri, schema.RUN_NAME)))
    except Exception:  # (no run.json, unreadable: nothing to log into)
        return {}
    return run if isinstance(run, dict) else {}


def _find_run(run_id: str, uris: list[str]) -> tuple[MlflowClient, str] | None:
    # deferred: loads MLflow only when a run is logged or a model looked up
    from mlflow import MlflowClient

    for uri in dict.fromkeys(uris):
        if not store_exists(uri):
            continue
        client = MlflowClient(uri)
        try:
            client.get_run(run_id)
        except Exception:  # (not in this store, or the store is unreachable)
            continue
        return client, uri
    return None


def log_evaluation(labels_uri: str, collection_uri: str, result: dict[str, Any]) -> str | None:
    """Log evaluate's scores into the MLflow run recorded in the labels' run.json (its recorded
    store, else the one the rule finds for the label set). No recorded or findable run: nothing
    logged, nothing said. Returns the run id; a tracking failure is one WARNING line."""
    run = _recorded_run(labels_uri)
    run_id = run.get("mlflow_run_id")
    if not run_id:
        return None
    uri = run.get("mlflow_tracking_uri") or labels_uri
    try:
        rule = tracking_uri_for(None, labels_uri, artifact=True, announce=False)
        found = _find_run(run_id, [u for u in (run.get("mlflow_tracking_uri"), rule) if u])
        if found is None:
            return None
        client, uri = found
        _log_batch(client, run_id, evaluation_metrics(result))
        client.set_tag(run_id, "webseg.eval_collection", located(collection_uri))
        log.info("MLflow: scores logged into run %s in %s", run_id, uri)
        return run_id
    except Exception as error:  # (tracking never fails the evaluation)
        log.warning("MLflow: scores not logged into run %s on %s: %s", run_id, uri, _short(error))
        return None


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"
