"""Shared fixtures: the dev collection's location and a session-scoped local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Ray starts its workers at nice 15: beside any busy process at nice 0 (a CI machine's other work,
# the CPU burners of the loaded runs in docs/reliability.md) they got ~2 % of a core each and the
# suite's Ray tests crawled into their timeouts. Every Ray the suite starts (the session one, each
# CLI subprocess's local Ray, the test heads) inherits this and runs its workers at nice 0.
os.environ.setdefault("RAY_worker_niceness", "0")
SAMPLE_DIR = Path(os.environ.get("WSSS_SAMPLE_DIR", REPO.parent / "shared" / "data" / "dev"))


@pytest.fixture(scope="session")
def dev_collection() -> Path:
    """The real dev collection (../shared/data/dev or $WSSS_SAMPLE_DIR); skipped when absent."""
    if not (SAMPLE_DIR / "manifest.jsonl").exists():
        pytest.skip(f"dev collection not found at {SAMPLE_DIR} (set WSSS_SAMPLE_DIR)")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole session. 4 logical CPUs on any machine: actor pools for CAM and
    refinement plus decode/write tasks must all get a slot (2 would deadlock on a 2-core box)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
