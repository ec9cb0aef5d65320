"""S3 end to end against a real SeaweedFS (`weed mini`, keys enforced) started on loopback here:
collection, pseudo-labels, checkpoint and MLflow artifacts on s3://, and no secret in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import start_seaweedfs

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_seaweedfs(str(tmp_path_factory.mktemp("seaweed")))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="module")
def s3_collection(s3, tmp_path_factory):
    import s3fs

    from pipeline import sample_data

    local = sample_data.generate(str(tmp_path_factory.mktemp("sample")), images=8, videos=1)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put(local, f"{s3.bucket}/collection", recursive=True)
    return f"s3://{s3.bucket}/collection"


def _webseg(s3, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **s3.env(),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": str(REPO),
    }
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_keys_are_enforced_and_writes_are_exclusive(s3):
    import s3fs

    from pipeline import storage
    from pipeline.retrain.state import (
        Watermark,
        acquire_lock,
        commit_watermark,
        create_exclusive,
        read_watermark,
        release_lock,
    )

    uri = f"s3://{s3.bucket}/state/lock-test.json"
    assert create_exclusive(uri, b"first")
    assert not create_exclusive(uri, b"second")
    assert storage.read_bytes(uri) == b"first"
    state = f"s3://{s3.bucket}/state"
    assert acquire_lock(state, "A", 60)[0] and not acquire_lock(state, "B", 60)[0]
    release_lock(state, "A")
    assert commit_watermark(state, Watermark(0, frozenset()), ["x"], "r1")
    assert not commit_watermark(state, Watermark(0, frozenset()), ["y"], "r2")
    assert read_watermark(state).ids == {"x"}
    wrong = s3fs.S3FileSystem(key=s3.access_key, secret="not-the-secret", skip_instance_cache=True)
    with pytest.raises(PermissionError):
        wrong.cat_file(f"{s3.bucket}/state/lock-test.json")


def test_pipeline_on_s3_end_to_end_without_leaking_secrets(s3, s3_collection, tmp_path):
    import mlflow
    import s3fs

    from pipeline import storage

    labels, model = f"s3://{s3.bucket}/labels", f"s3://{s3.bucket}/models/classifier.pt"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)  # MLflow artifacts of this experiment go to the bucket
    mlflow.create_experiment("webseg-classifier", artifact_location=f"s3://{s3.bucket}/mlflow")
    trained = _webseg(
        s3,
        "train-classifier",
        "--collection",
        s3_collection,
        "--out",
        model,
        "--epochs",
        "1",
        "--workers",
        "1",
        "--tracking-uri",
        tracking,
        cwd=tmp_path,
    )
    labelled = _webseg(
        s3,
        "pseudo-label",
        "--collection",
        s3_collection,
        "--model",
        model,
        "--out",
        labels,
        cwd=tmp_path,
    )

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert fs.exists(f"{s3.bucket}/models/classifier.pt")
    assert fs.exists(f"{labels}/manifest.parquet") and fs.exists(f"{labels}/run.json")
    run = json.loads(storage.read_text(f"{labels}/run.json"))
    labelled_rows = run["counts"]["status"].get("labelled", 0)
    assert labelled_rows > 0, run["counts"]
    assert len(fs.glob(f"{s3.bucket}/labels/masks/**/*.png")) >= labelled_rows
    assert fs.glob(f"{s3.bucket}/mlflow/**/classifier.pt"), "MLflow artifact on S3"

    secret = s3.secret_key
    texts = [
        trained.stdout,
        trained.stderr,
        labelled.stdout,
        labelled.stderr,
        storage.read_text(f"{labels}/run.json"),
    ]
    client = mlflow.MlflowClient(tracking)
    for experiment in client.search_experiments():
        for found in client.search_runs([experiment.experiment_id]):
            texts += [json.dumps(found.data.params), json.dumps(found.data.tags)]
    assert all(secret not in text for text in texts), "secret key leaked into an output"
    for path in tmp_path.rglob("*"):  # mlflow.db, local artifacts, logs
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret key in {path}"
