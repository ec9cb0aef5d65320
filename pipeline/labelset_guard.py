"""What made a label set and who is writing it: the fingerprint in run.json, and the run lock.

A rerun into the same output resumes only when its fingerprint (model URI and sha256, the config
that changes labels, code version) matches the recorded one; otherwise it stops before any work,
naming what differs. `overwrite` starts over: the old set is moved aside, then deleted. One run
writes an output at a time: the second finds LABELS/_lock.json (owner, host, pid, expiry) and stops.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from pipeline import labelset_lock, schema, storage
from pipeline.config import flatten
from pipeline.output import LabelSetError, write_run_json

log = logging.getLogger(__name__)

RERUN_HINT = "rerun with --overwrite to start over or choose another --out"
MODEL_KEYS = ("model_uri", "model_sha256")


@functools.cache
def code_version() -> str:
    """The package version and the git commit of this checkout (when it is one), once per
    process: the code a process runs is the code it imported, whatever is committed since."""

    try:
        version = metadata.version("webseg")
    except metadata.PackageNotFoundError:
        version = "0"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


def file_sha256(uri: str) -> str:
    digest = hashlib.sha256()
    digest.update(storage.read_bytes(uri))
    return digest.hexdigest()


def fingerprint(
    model_uri: str | None,
    model_sha256: str | None,
    config: Any,
    exclude: tuple[str, ...] = ("resources.",),
    version: str | None = None,
) -> dict[str, Any]:
    """The record of what makes a label set's labels; config keys starting with an excluded
    prefix (resources, which never change a label) are left out. JSON-normalised."""
    flat = {k: v for k, v in flatten(config).items() if not k.startswith(exclude)}
    record = {
        "model_uri": model_uri or "none",
        "model_sha256": model_sha256 or "none",
        "config": flat,
        "code_version": version or code_version(),
    }
    return json.loads(json.dumps(record, default=str))


def _short(sha: str) -> str:
    return sha if sha == "none" else f"{sha[:12]}.."


def _release(version: str | None) -> str:
    return str(version).split("+", 1)[0]


def fingerprint_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between a recorded fingerprint and this run's, in words; None when equal."""
    if any(old.get(k) != new.get(k) for k in MODEL_KEYS):
        return (
            f"was made by model {old.get('model_uri')} (sha256 {_short(str(old.get('model_sha256')))}),"
            f" this run uses {new['model_uri']} (sha256 {_short(new['model_sha256'])})"
        )
    old_cfg, new_cfg = old.get("config") or {}, new["config"]
    keys = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
    if keys:
        more = f" (and {len(keys) - 1} more config keys)" if len(keys) > 1 else ""
        key = keys[0]
        return (
            f"was made with {key}={old_cfg.get(key)!r}, this run has "
            f"{key}={new_cfg.get(key)!r}{more}"
        )
    # The release, not the commit: a scheduled retrain resumes its labels across deploys of
    # one release (the commit stays recorded in run.json).
    if _release(old.get("code_version")) != _release(new["code_version"]):
        return (
            f"was made by code version {old.get('code_version')}, this run is {new['code_version']}"
        )
    return None


def has_label_set(out_uri: str) -> bool:
    """Whether out_uri holds labels (of a finished or an interrupted run); a run.json alone is
    what a run that stopped before labelling anything leaves."""
    names = (schema.MANIFEST_NAME, schema.PARTS_DIR, schema.MASKS_DIR, schema.PIXEL_HEAD_NAME)
    return any(storage.exists(storage.join(out_uri, name)) for name in names)


def recorded_fingerprint(out_uri: str) -> dict[str, Any] | None:
    uri = storage.join(out_uri, schema.RUN_NAME)
    if not storage.exists(uri):
        return None
    try:
        return json.loads(storage.read_text(uri)).get("fingerprint")
    except (ValueError, AttributeError):
        return None


def check_resumable(out_uri: str, new: dict[str, Any]) -> None:
    """LabelSetError naming what differs when out_uri holds a label set made otherwise."""
    if not has_label_set(out_uri):
        return
    old = recorded_fingerprint(out_uri)
    if old is None:
        raise LabelSetError(
            f"{out_uri} holds a label set without a fingerprint in {schema.RUN_NAME} "
            f"(made by an older version, or not by webseg); {RERUN_HINT}"
        )
    difference = fingerprint_difference(old, new)
    if difference:
        raise LabelSetError(f"{out_uri} {difference}; {RERUN_HINT}")


def require_out_folder(out_uri: str) -> None:
    """LabelSetError unless out_uri is a folder, or a folder that can be created there."""
    if storage.is_remote(out_uri):
        return
    path = os.path.abspath(out_uri.removeprefix("file://"))
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise LabelSetError(f"--out {out_uri} {where}, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LabelSetError(f"--out {out_uri}: {probe} is not writable")


def remove_label_set(out_uri: str, keep: tuple[str, ...] = (labelset_lock.LOCK_NAME,)) -> None:
    """Delete what a run wrote under out_uri. run.json (the fingerprint) goes first, so a removal
    cut short leaves a set no rerun resumes; locally every entry is renamed aside, then deleted."""
    fs, path = storage.filesystem(out_uri)
    entries = [e for e in fs.ls(path, detail=False) if os.path.basename(e) not in keep]
    entries.sort(key=lambda e: os.path.basename(e) != schema.RUN_NAME)
    if storage.is_remote(out_uri):
        for entry in entries:
            fs.rm(entry, recursive=True)
        return
    aside = f"{path.rstrip(os.sep)}.old-{uuid.uuid4().hex[:8]}"
    os.makedirs(aside)
    for entry in entries:
        os.rename(entry, os.path.join(aside, os.path.basename(entry)))
    shutil.rmtree(aside, ignore_errors=True)
    log.info("removed the old label set at %s", out_uri)


@contextlib.contextmanager
def claim(out_uri: str, record: dict[str, Any], overwrite: bool = False) -> Iterator[None]:
    """Hold out_uri for one run made as `record` says (a fingerprint): LabelSetError at once when
    --out is not a folder, another run writes it, or it holds a label set made otherwise (unless
    overwrite, which removes that set). A new set gets run.json with the fingerprint at once,
    so an interrupted first run is resumed, not refused."""
    require_out_folder(out_uri)
    with labelset_lock.held(out_uri):
        if overwrite and has_label_set(out_uri):
            remove_label_set(out_uri)
        check_resumable(out_uri, record)
        if not has_label_set(out_uri):
            write_run_json(out_uri, {"fingerprint": record, "complete": False})
        yield
