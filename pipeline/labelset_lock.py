"""One writer per label set: LABELS/_lock.json, created exclusively, renewed while the run works.

A lease names its owner, host, pid and expiry (like retrain's lock, pipeline/retrain/state.py). It
is stale when it expired (a run on another host died) or when its pid is gone on this host (a
killed local run): a stale lease is taken over by one run only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from pipeline import storage
from pipeline.output import LabelSetError
from pipeline.retrain.state import create_exclusive

log = logging.getLogger(__name__)

LOCK_NAME = "_lock.json"
LOCK_TTL_S = 600.0  # a lease not renewed for this long is stale
HEARTBEAT_S = 60.0  # how often a running job renews its lease


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def lease_is_stale(lease: dict[str, Any], now: float, host: str) -> bool:
    """Expired, or held by a process of this host that no longer exists."""
    if float(lease.get("expires", 0.0)) < now:
        return True
    return lease.get("host") == host and not _pid_alive(int(lease.get("pid", 0) or 0))


def _lease(owner: str) -> dict[str, Any]:
    now = time.time()
    return {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "expires": now + LOCK_TTL_S,
    }


def _read(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None
    except ValueError:  # half-written by a foreign tool: treat as expired
        return {"owner": "unreadable", "expires": 0}


def acquire(out_uri: str, owner: str) -> tuple[bool, dict[str, Any] | None]:
    """(acquired?, the lease that holds the lock)."""
    uri = storage.join(out_uri, LOCK_NAME)
    lease = _lease(owner)
    data = json.dumps(lease).encode()
    if create_exclusive(uri, data):
        return True, lease
    held = _read(uri)
    if held is None:  # released between the two calls
        return (True, lease) if create_exclusive(uri, data) else (False, _read(uri))
    if not lease_is_stale(held, time.time(), socket.gethostname()):
        return False, held
    marker = f"{uri}.takeover-{held.get('owner')}"
    if not create_exclusive(marker, data):  # another run is taking it over
        return False, held
    log.warning("taking over the stale lock of %s (pid %s)", held.get("owner"), held.get("pid"))
    storage.write_bytes(uri, data)
    storage.remove(marker)
    return True, lease


def renew(out_uri: str, owner: str) -> None:
    uri = storage.join(out_uri, LOCK_NAME)
    held = _read(uri)
    if held and held.get("owner") == owner:
        storage.write_bytes(uri, json.dumps({**held, "expires": time.time() + LOCK_TTL_S}).encode())


def release(out_uri: str, owner: str) -> None:
    uri = storage.join(out_uri, LOCK_NAME)
    held = _read(uri)
    if held and held.get("owner") == owner:
        storage.remove(uri)


def busy_message(out_uri: str, lease: dict[str, Any] | None) -> str:
    lease = lease or {}
    return (
        f"{out_uri} is being written by another run (pid {lease.get('pid')} on "
        f"{lease.get('host')}, since {lease.get('acquired')}); wait for it to finish or choose "
        f"another --out (the lock {storage.join(out_uri, LOCK_NAME)} of a dead run is taken over at "
        f"once on its own host, after {LOCK_TTL_S:.0f} s elsewhere)"
    )


def _heartbeat(out_uri: str, owner: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(Exception):  # a failed renewal is retried at the next beat
            renew(out_uri, owner)


@contextlib.contextmanager
def held(out_uri: str) -> Iterator[str]:
    """Hold out_uri's lock (renewed in the background) or raise LabelSetError at once."""
    owner = uuid.uuid4().hex
    acquired, lease = acquire(out_uri, owner)
    if not acquired:
        raise LabelSetError(busy_message(out_uri, lease))
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(out_uri, owner, stop), daemon=True)
    beat.start()
    try:
        yield owner
    finally:
        stop.set()
        release(out_uri, owner)
