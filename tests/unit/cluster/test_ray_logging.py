"""Ray's own output: its notices, Ray Data's progress bars and Ray Train's notices quiet unless -v."""

import importlib
import logging
import threading

import pytest

from pipeline import logs
from pipeline.cluster import ray_logging


@pytest.fixture
def ray_logs_off(monkeypatch):
    monkeypatch.setenv(logs.RAY_LOGS_ENV, "0")


def test_the_worker_setup_hook_names_quiet_ray_worker():
    """Ray imports the hook by its dotted path in each worker: a stale path fails only there."""
    module, _, name = ray_logging.WORKER_SETUP_HOOK.rpartition(".")
    assert getattr(importlib.import_module(module), name) is ray_logging.quiet_ray_worker


def test_token_auth_notice_is_dropped_unless_ray_logs_are_wanted(ray_logs_off, caplog):
    name = "ray._private.authentication.authentication_token_setup"
    logger = logging.getLogger(name)
    before = list(logger.filters)
    try:
        ray_logging.quiet_ray_before_init()
        with caplog.at_level(logging.WARNING):
            logger.warning("Token authentication is enabled for this Ray cluster. Set ...")
            logger.warning("a real problem")
        assert [r.getMessage() for r in caplog.records] == ["a real problem"]
    finally:
        logger.filters[:] = before


def test_ray_data_progress_bars_follow_the_flag(ray_logs_off, monkeypatch):
    ray_data = pytest.importorskip("ray.data")
    context = ray_data.DataContext.get_current()
    monkeypatch.setattr(context, "enable_progress_bars", True)
    ray_logging.quiet_ray_data()
    assert context.enable_progress_bars is False
    consoles = [
        h for h in logging.getLogger("ray.data").handlers if type(h).__name__ == "PlainRayHandler"
    ]
    assert consoles and all(h.level == logging.WARNING for h in consoles)
    monkeypatch.setenv(logs.RAY_LOGS_ENV, "1")
    ray_logging.quiet_ray_data()
    assert context.enable_progress_bars is True


def test_ray_train_notices_of_a_local_ray_are_dropped_and_real_warnings_kept():
    ray_logging.drop_ray_train_notices()
    for name, notice in ray_logging.RAY_TRAIN_NOTICES.items():
        logger = logging.getLogger(name)
        record = logger.makeRecord(name, logging.WARNING, __file__, 1, notice + " ...", (), None)
        kept = logger.makeRecord(name, logging.WARNING, __file__, 1, "worker group died", (), None)
        assert not logger.filter(record) and logger.filter(kept)


def test_the_cleaner_threads_connection_error_is_quiet_and_other_thread_errors_are_not():
    seen = []
    hook = ray_logging._quiet_cleaner_thread(
        lambda args: seen.append((args.thread.name, args.exc_type))
    )

    def fail(error):
        raise error

    original = threading.excepthook
    threading.excepthook = hook
    try:
        for name, error in ((ray_logging.PG_CLEANER_THREAD, ConnectionError("two Rays")),
                            (ray_logging.PG_CLEANER_THREAD, ValueError("real")),
                            ("worker", ConnectionError("real"))):  # fmt: skip
            thread = threading.Thread(target=fail, args=(error,), name=name)
            thread.start()
            thread.join()
    finally:
        threading.excepthook = original
    assert seen == [(ray_logging.PG_CLEANER_THREAD, ValueError), ("worker", ConnectionError)]


def test_small_input_notices_of_capped_pools_are_dropped_and_other_warnings_kept(ray_logs_off):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ray_logging.quiet_ray_before_init()
        for text in (
            "The maximum number of concurrent tasks for 'MapBatches(write_batch)' is set to 3",
            "The minimum number of concurrent actors for 'MapBatches(LabelItemsStage)' is set to 3",
            "a real problem",
        ):
            warnings.warn(text, UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real problem"]
