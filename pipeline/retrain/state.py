"""Retraining state on a local folder or S3 prefix: watermarks, the run lock, decisions.

Every write that two runs may race on is created exclusively (see create_exclusive): os.link
locally, If-None-Match: * on S3. The layout under WORK/state/ is described in pipeline/retrain/run.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pipeline import storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watermark:
    version: int  # 0 = nothing processed yet
    ids: frozenset[str]  # item ids processed by committed runs
    run: str | None = None  # the run that committed this version


def lease_is_stale(lease: dict[str, Any], now: float) -> bool:
    return float(lease.get("expires", 0.0)) < now


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write uri only if it does not exist; True when this call created it (atomic)."""
    fs, path = storage.filesystem(uri)
    if not storage.is_remote(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)  # like O_EXCL, but readers never see a half-written file
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    try:
        fs.pipe_file(path, data, mode="create")  # PutObject with If-None-Match: *
        return True
    except OSError as error:  # s3fs maps 412 PreconditionFailed / 409 conflicts to OSError
        text = str(error).lower()
        if (
            error.errno == errno.EINVAL
            or "precondition" in text
            or "pre-condition" in text
            or "conflict" in text
        ):
            return False
        raise


def _read_json(uri: str) -> dict[str, Any] | None:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache(path)
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


def read_watermark(state_uri: str) -> Watermark:
    folder = storage.join(state_uri, "watermarks")
    fs, path = storage.filesystem(folder)
    fs.invalidate_cache(path)  # s3fs caches listings; another run may have committed since
    names = [n for n in storage.list_files(folder, ".json") if os.path.basename(n)[:6].isdigit()]
    if not names:
        return Watermark(0, frozenset())
    latest = max(names, key=lambda n: int(os.path.basename(n)[:6]))
    data = json.loads(storage.read_bytes(latest))
    return Watermark(int(data["version"]), frozenset(data["ids"]), data.get("run"))


def commit_watermark(state_uri: str, previous: Watermark, added: list[str], run: str) -> bool:
    """Compare-and-set: create version previous+1; False when another run committed it first."""
    version = previous.version + 1
    body = {
        "version": version,
        "run": run,
        "committed": time.time(),
        "added": sorted(added),
        "ids": sorted(previous.ids | set(added)),
    }
    uri = storage.join(state_uri, "watermarks", f"{version:06d}.json")
    return create_exclusive(uri, json.dumps(body, indent=1).encode())


def acquire_lock(state_uri: str, owner: str, ttl_s: float) -> tuple[bool, dict[str, Any] | None]:
    """(acquired?, the lease that holds the lock). A stale lease is taken over by one run only."""
    uri, now = storage.join(state_uri, "lock.json"), time.time()
    lease = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired": now,
        "expires": now + ttl_s,
    }
    data = json.dumps(lease).encode()
    if create_exclusive(uri, data):
        return True, lease
    held = _read_json(uri)
    if held is None:  # released between our two calls: try once more
        return (True, lease) if create_exclusive(uri, data) else (False, _read_json(uri))
    if not lease_is_stale(held, now):
        return False, held
    # only the run that creates this marker may replace the stale lease
    if not create_exclusive(f"{uri}.takeover-{held.get('owner')}", data):
        return False, held
    log.warning(
        "taking over a stale lock of %s (expired %.0f s ago)",
        held.get("owner"),
        now - float(held.get("expires", 0)),
    )
    storage.write_bytes(uri, data)
    return True, lease


def release_lock(state_uri: str, owner: str) -> None:
    uri = storage.join(state_uri, "lock.json")
    held = _read_json(uri)
    if held and held.get("owner") == owner:
        storage.remove(uri)


def write_decision(state_uri: str, decision: dict[str, Any]) -> str:
    uri = storage.join(state_uri, "decisions", f"{decision['run']}.json")
    storage.write_text(uri, json.dumps(decision, indent=2, default=str))
    return uri


def write_subcollection(collection, ids: list[str], uri: str) -> str:
    """A collection folder at uri listing only the given items (absolute media uris)."""
    wanted = set(ids)
    rows = [
        {"id": it.id, "uri": it.uri, "kind": it.kind, "tags": list(it.tags)}
        for it in collection.items
        if it.id in wanted and it.error is None
    ]
    storage.write_text(
        storage.join(uri, "manifest.jsonl"), "".join(json.dumps(r) + "\n" for r in rows)
    )
    storage.write_text(storage.join(uri, "classes.json"), json.dumps(list(collection.classes)))
    return uri
