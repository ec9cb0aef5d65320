"""The environment a driver hands its Ray workers (pipeline.cluster.runtime.worker_env); no Ray runs."""

from pipeline.cluster.runtime import WORKER_MALLOC_ENV, worker_env


def test_workers_get_the_forwarded_settings_and_the_malloc_defaults(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in WORKER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    env = worker_env({})
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert "MLFLOW_TRACKING_URI" not in env
    assert {n: env[n] for n in WORKER_MALLOC_ENV} == WORKER_MALLOC_ENV


def test_a_users_malloc_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert worker_env({})["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_what_the_jobs_runtime_env_sets_is_left_to_it(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    env = worker_env({"AWS_ENDPOINT_URL": "http://s3", "MALLOC_TOP_PAD_": "0"})
    assert "AWS_ENDPOINT_URL" not in env and "MALLOC_TOP_PAD_" not in env
    assert "MALLOC_TRIM_THRESHOLD_" in env
