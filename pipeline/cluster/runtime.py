"""Connect to Ray: a cluster when an address is given (or RAY_ADDRESS is set), else a local Ray."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from pipeline.cluster.ray_logging import WORKER_SETUP_HOOK, quiet_ray_before_init, quiet_ray_data
from pipeline.logs import RAY_LOGS_ENV, ray_log_level

log = logging.getLogger(__name__)

LOCAL_MIN_CPUS = 3

# Environment handed to Ray workers so that S3 and MLflow settings reach them (values never logged).
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "WEBSEG_IO_RETRIES",
    "WEBSEG_IO_RETRY_DELAY",
)


# glibc malloc settings for Ray workers: keep freed memory in the process instead of returning it to
# the OS after every frame. By default each large tensor is mmapped and unmapped again, and the next
# frame faults fresh zeroed pages in: perf of a CAM process showed page faults and page clearing as
# its top kernel symbols, and 38 % of its CPU time in the kernel (benchmarks/scale.py baseline on 13
# dev items: sys 14.2 s of 37 s; with these settings 7.1 s). A variable the user set wins.
# The settings bind only the main arena, and Ray Data runs an actor's batches on a pool thread,
# which glibc gives an arena of its own: one arena for every thread makes them bind there too
# (dev, the loop run on a thread: 10.1M page faults and 20.7 s in the kernel, with one arena 2.5M
# and 6.3 s).
WORKER_MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),  # glibc's maximum; larger buffers are still mmapped
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}


def worker_env(job_env: dict[str, str]) -> dict[str, str]:
    """Environment for Ray workers: the driver's S3/MLflow settings and the malloc settings,
    leaving out what the submitted job's own runtime env sets (Ray refuses to have both)."""
    env = {n: os.environ[n] for n in FORWARDED_ENV if n in os.environ}
    env |= {n: os.environ.get(n, value) for n, value in WORKER_MALLOC_ENV.items()}
    return {n: v for n, v in env.items() if n not in job_env}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a local Ray gets the driver's S3/MLflow environment."""
    if ray.is_initialized():
        return
    with _callers_sigterm_handler_kept():
        _init(address, num_cpus)


@contextmanager
def _callers_sigterm_handler_kept() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with sys.exit; a caller that installed its
    own (the CLI: report, release the label-set lock, say how to resume) keeps it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)


def _init(address: str | None, num_cpus: int | None) -> None:
    address = address or os.environ.get("RAY_ADDRESS")
    env = worker_env(_job_env_vars())
    quiet_ray_before_init()
    if address:
        ray.init(
            address=address,
            runtime_env={"env_vars": env},
            log_to_driver=True,
            logging_level=ray_log_level(),
        )
        quiet_ray_data()
        log.info("connected to Ray at %s", address)
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # A local Ray gets at least LOCAL_MIN_CPUS logical CPUs so that the CAM and refine actor pools
    # and the decode/write tasks all get a slot on a 2-core laptop (see docs: actor-pool deadlock).
    num_cpus = num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_CPUS)
    env[RAY_LOGS_ENV] = os.environ.get(RAY_LOGS_ENV, "0")
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env, "worker_process_setup_hook": WORKER_SETUP_HOOK},
        configure_logging=True,
        logging_level=ray_log_level(),
    )
    quiet_ray_data()
    log.info("started a local Ray with %s CPUs", ray.cluster_resources().get("CPU"))


def _job_env_vars() -> dict[str, str]:
    """env_vars of the runtime env of the Ray job this driver runs in ({} outside a job)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return {}
