"""Ray's own output, quiet unless ray logs are wanted (-v, WEBSEG_RAY_LOGS=1; see pipeline/logs.py):
its notices before ray.init, Ray Data's progress bars, and the setup hook of a local Ray's workers.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable

import ray  # already imported in a Ray worker, where quiet_ray_worker runs
from ray.util.annotations import RayDeprecationWarning

from pipeline.logs import ray_logs_wanted

# Ray lines that say nothing to a WebSeg user (each is shown again with -v).
RAY_NOTICES = (
    "Token authentication is enabled for this Ray cluster",  # a local Ray's default, not a fault
    "Progress bars disabled",  # WebSeg turned them off on purpose
)
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
# small inputs for a big actor pool, or for a capped task pool (decode, write)
RAY_WARNINGS = ("The minimum number of concurrent actors", "The maximum number of concurrent tasks")


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


RAY_WORKER_LOGGERS = ("ray", "ray.train", "ray.data", "ray.tune")
_TRAIN = "ray.train.v2._internal.execution."
# Ray Train notices a local Ray shows without a fault (each is shown again with -v): its cleaner
# polls the state API of a dashboard a local Ray does not run (with two Ray instances on one
# machine it cannot choose one and its thread ends: see _quiet_cleaner_thread); its autoscaling
# request times out on a busy machine and is retried
PG_CLEANER_THREAD = "PlacementGroupCleanerMonitor"
TRAIN_REPORT_MODULE = ("train", "v2", "_internal", "execution", "context.py")
RAY_TRAIN_NOTICES = {
    _TRAIN + "controller.placement_group_cleaner": "Failed to query Ray Train Controller",
    _TRAIN + "scaling_policy.autoscaling_coordinator_client": "Failed to send resource request",
}


def quiet_ray_worker() -> None:
    """Set up each worker of a local Ray (runtime.py passes WORKER_SETUP_HOOK): Ray's own
    INFO lines (Train's checkpoint and report notices) stay in the log files unless ray logs are
    wanted (-v). Touches only Python logging: no Ray calls while the worker is starting."""
    if ray_logs_wanted():
        return
    for name in RAY_WORKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(_train_report_logger()).setLevel(logging.WARNING)
    drop_ray_train_notices()
    threading.excepthook = _quiet_cleaner_thread(threading.excepthook)
    # Ray Data's actors (a training dataset's SplitCoordinator) print their own execution lines
    # and an API deprecation notice that is Ray Train's to fix, not the user's
    quiet_ray_data()
    warnings.filterwarnings("ignore", category=RayDeprecationWarning)


# runtime_env worker_process_setup_hook: the dotted path of quiet_ray_worker, read off this module
WORKER_SETUP_HOOK = f"{__name__}.{quiet_ray_worker.__name__}"


def _quiet_cleaner_thread(default: Callable) -> Callable:
    """An excepthook that logs (at DEBUG) the ConnectionError of Train's placement-group cleaner
    thread (two Ray instances on one machine) instead of printing its traceback."""

    def hook(args: threading.ExceptHookArgs) -> None:
        cleaner = args.thread is not None and args.thread.name == PG_CLEANER_THREAD
        if cleaner and issubclass(args.exc_type, ConnectionError):
            logging.getLogger(__name__).debug("placement-group cleaner: %s", args.exc_value)
            return
        default(args)

    return hook


def _train_report_logger() -> str:
    """Ray Train names the logger of its "Reporting training result" lines by file path."""
    return os.path.join(os.path.dirname(ray.__file__), *TRAIN_REPORT_MODULE)


def drop_ray_train_notices() -> None:
    for logger, notice in RAY_TRAIN_NOTICES.items():
        _set_drop_filter(logging.getLogger(logger), (notice,))


def quiet_ray_before_init() -> None:
    """Filters that must be in place before ray.init prints (the token-auth notice)."""
    fragments = () if ray_logs_wanted() else RAY_NOTICES
    _set_drop_filter(logging.getLogger("ray"), fragments)
    _set_drop_filter(logging.getLogger(AUTH_LOGGER), fragments)
    if not fragments:
        return
    for fragment in RAY_WARNINGS:
        warnings.filterwarnings("ignore", message=f"{fragment}.*", category=UserWarning)


def quiet_ray_data() -> None:
    """Ray Data: progress bars (and the periodic progress blocks of non-terminal logs) and its
    INFO console lines only with ray logs wanted (-v); its file logs are untouched. Workers call
    it from their setup hook: ray.data configures its loggers when first imported."""
    import ray.data  # deferred: loaded only by the workers' hook and drivers that use Ray Data

    ray_logs = ray_logs_wanted()
    ray.data.DataContext.get_current().enable_progress_bars = ray_logs
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler) is logging.StreamHandler or type(handler).__name__ == "PlainRayHandler":
            handler.setLevel(logging.INFO if ray_logs else logging.WARNING)
            _set_drop_filter(handler, () if ray_logs else RAY_NOTICES)


def _set_drop_filter(target: logging.Filterer, fragments: tuple[str, ...]) -> None:
    """Replace target's _DropMessages filter (one at most) by one for fragments (none if empty)."""
    for existing in [f for f in target.filters if isinstance(f, _DropMessages)]:
        target.removeFilter(existing)
    if fragments:
        target.addFilter(_DropMessages(fragments))
