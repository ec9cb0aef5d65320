"""Who speaks: WebSeg's loggers at the chosen level, Ray's notices and progress bars off unless -v."""

import logging
import os

import pytest

from pipeline import logs


@pytest.fixture
def restore_logging(monkeypatch):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in logs.WEBSEG_LOGGERS}
    monkeypatch.setenv(logs.RAY_LOGS_ENV, "0")
    monkeypatch.setenv(logs.QUIET_ENV, "0")
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.delenv(logs.MLFLOW_LEVEL_SET_HERE, raising=False)
    mlflow_level = logging.getLogger("mlflow").level
    logging.getLogger("mlflow").setLevel(logging.INFO)  # what `import mlflow` leaves
    yield
    logging.getLogger("mlflow").setLevel(mlflow_level)
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_default_webseg_info_everything_else_warning(restore_logging):
    logs.configure_logging("info")
    assert logging.getLogger("pipeline.cluster.dataflow").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("mlflow").getEffectiveLevel() == logging.WARNING
    assert logs.ray_log_level() == logging.WARNING and logs.progress_wanted()
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"  # reaches a local Ray's workers


def test_quiet_and_verbose(restore_logging):
    logs.configure_logging("debug", quiet=True)
    assert logging.getLogger("webseg.stage").getEffectiveLevel() == logging.WARNING
    assert not logs.progress_wanted()
    logs.configure_logging("debug", ray_logs=True)
    assert logging.getLogger("pipeline").getEffectiveLevel() == logging.DEBUG
    assert logs.ray_log_level() == logging.INFO


def test_ray_train_console_level_follows_the_ray_logs_flag(restore_logging):
    logs.configure_logging("info")
    assert logs.train_log_level() == "WARNING"
    logs.configure_logging("info", ray_logs=True)
    assert logs.train_log_level() == "INFO"
