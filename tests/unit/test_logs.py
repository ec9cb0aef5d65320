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
    assert logging.getLogger("pipeline.dataflow").getEffectiveLevel() == logging.INFO
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


def test_token_auth_notice_is_dropped_unless_ray_logs_are_wanted(restore_logging, caplog):
    name = "ray._private.authentication.authentication_token_setup"
    logger = logging.getLogger(name)
    before = list(logger.filters)
    try:
        logs.quiet_ray_before_init()
        with caplog.at_level(logging.WARNING):
            logger.warning("Token authentication is enabled for this Ray cluster. Set ...")
            logger.warning("a real problem")
        assert [r.getMessage() for r in caplog.records] == ["a real problem"]
    finally:
        logger.filters[:] = before


def test_ray_data_progress_bars_follow_the_flag(restore_logging, monkeypatch):
    ray_data = pytest.importorskip("ray.data")
    context = ray_data.DataContext.get_current()
    monkeypatch.setattr(context, "enable_progress_bars", True)
    logs.quiet_ray_data()
    assert context.enable_progress_bars is False
    consoles = [
        h for h in logging.getLogger("ray.data").handlers if type(h).__name__ == "PlainRayHandler"
    ]
    assert consoles and all(h.level == logging.WARNING for h in consoles)
    monkeypatch.setenv(logs.RAY_LOGS_ENV, "1")
    logs.quiet_ray_data()
    assert context.enable_progress_bars is True


def test_ray_train_notices_of_a_local_ray_are_dropped_and_real_warnings_kept():
    logs.drop_ray_train_notices()
    for name, notice in logs.RAY_TRAIN_NOTICES.items():
        logger = logging.getLogger(name)
        record = logger.makeRecord(name, logging.WARNING, __file__, 1, notice + " ...", (), None)
        kept = logger.makeRecord(name, logging.WARNING, __file__, 1, "worker group died", (), None)
        assert not logger.filter(record) and logger.filter(kept)


def test_ray_train_console_level_follows_the_ray_logs_flag(restore_logging):
    logs.configure_logging("info")
    assert logs.train_log_level() == "WARNING"
    logs.configure_logging("info", ray_logs=True)
    assert logs.train_log_level() == "INFO"


def test_the_cleaner_threads_connection_error_is_quiet_and_other_thread_errors_are_not():
    import threading

    seen = []
    hook = logs._quiet_cleaner_thread(lambda args: seen.append((args.thread.name, args.exc_type)))

    def fail(error):
        raise error

    original = threading.excepthook
    threading.excepthook = hook
    try:
        for name, error in ((logs.PG_CLEANER_THREAD, ConnectionError("two Rays")),
                            (logs.PG_CLEANER_THREAD, ValueError("real")),
                            ("worker", ConnectionError("real"))):  # fmt: skip
            thread = threading.Thread(target=fail, args=(error,), name=name)
            thread.start()
            thread.join()
    finally:
        threading.excepthook = original
    assert seen == [(logs.PG_CLEANER_THREAD, ValueError), ("worker", ConnectionError)]
