"""Who speaks on the terminal: WebSeg's own log lines at the chosen level, Ray quiet unless asked.

    configure_logging("info")                 # webseg's default: WebSeg INFO, Ray WARNING, no Ray bars
    configure_logging("info", ray_logs=True)  # `-v`: Ray's INFO logs and Ray Data's progress bars back

`init_ray` (cluster/runtime.py) reads `ray_logs_wanted()` so that jobs and notebooks get the same
quiet default; WEBSEG_RAY_LOGS=1 brings Ray's output back without the CLI. What quiets Ray itself
(its notices, Ray Data's bars, the workers' setup hook) is in cluster/ray_logging.py.
"""

from __future__ import annotations

import logging
import os
import sys

WEBSEG_LOGGERS = ("pipeline", "webseg", "jobs")
LEVELS = ("debug", "info", "warning", "error")
RAY_LOGS_ENV = "WEBSEG_RAY_LOGS"  # "1": Ray's own INFO logs and progress bars (what -v sets)
QUIET_ENV = "WEBSEG_QUIET"  # "1": no WebSeg progress bars (what --quiet sets)
MLFLOW_LEVEL_SET_HERE = "WEBSEG_SET_MLFLOW_LOGGING_LEVEL"  # ours to change again, not the user's
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "info", quiet: bool = False, ray_logs: bool = False) -> None:
    """WebSeg loggers at `level` (WARNING with quiet), everything else at WARNING; one stderr handler."""
    webseg_level = logging.WARNING if quiet else getattr(logging, level.upper())
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO if ray_logs else logging.WARNING)
    for name in WEBSEG_LOGGERS:
        logging.getLogger(name).setLevel(webseg_level)
    _quiet_mlflow(logging.INFO if ray_logs else logging.WARNING)
    os.environ[RAY_LOGS_ENV] = "1" if ray_logs else "0"
    os.environ[QUIET_ENV] = "1" if quiet else "0"


def _quiet_mlflow(level: int) -> None:
    """MLflow sets its own logger to INFO on import (MLFLOW_LOGGING_LEVEL): the variable reaches
    it in this process and in a local Ray's workers (set before the Ray starts), unless the user
    set it."""
    if "MLFLOW_LOGGING_LEVEL" in os.environ and os.environ.get(MLFLOW_LEVEL_SET_HERE) != "1":
        return
    os.environ["MLFLOW_LOGGING_LEVEL"] = logging.getLevelName(level)
    os.environ[MLFLOW_LEVEL_SET_HERE] = "1"
    logging.getLogger("mlflow").setLevel(level)


def ray_logs_wanted() -> bool:
    return os.environ.get(RAY_LOGS_ENV, "0") == "1"


def progress_wanted() -> bool:
    return os.environ.get(QUIET_ENV, "0") != "1"


def train_log_level() -> str:
    """Ray Train's console level (RunConfig(logging_config=LoggingConfig(log_level=...)))."""
    return "INFO" if ray_logs_wanted() else "WARNING"


def ray_log_level() -> int:
    """The level of Ray's driver-side `ray` logger (ray.init(logging_level=...))."""
    return logging.INFO if ray_logs_wanted() else logging.WARNING
