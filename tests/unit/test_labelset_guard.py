"""A label set's fingerprint and lock (no Ray): a rerun resumes only a set made the same way, names
what differs otherwise, --overwrite starts over, and one run writes an output at a time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from pipeline import labelset_lock, schema
from pipeline.config import from_dict
from pipeline.label_config import PseudoLabelConfig
from pipeline.labelset_guard import (
    check_resumable,
    claim,
    fingerprint,
    fingerprint_difference,
    require_out_folder,
)
from pipeline.output import LabelSetError
from pipeline.preflight import PSEUDO_LABEL_EXCLUDE


def _record(model="m.pt", sha="ab" * 32, version="0.1.0+abc", **config):
    cfg = from_dict(PseudoLabelConfig, config)
    return fingerprint(model, sha, cfg, exclude=PSEUDO_LABEL_EXCLUDE, version=version)


def test_resources_and_retry_policy_are_not_part_of_the_fingerprint():
    base = _record()
    assert _record(resources={"cam": {"actors": 7, "batch_size": 1}}) == base
    assert _record(output={"retry_failed": False}) == base
    assert _record(image={"method": "dsrg"}) != base
    assert not [k for k in base["config"] if k.startswith("resources.")]


def test_the_difference_names_the_model_then_the_config_then_the_code():
    old = _record()
    assert fingerprint_difference(old, _record()) is None
    model = fingerprint_difference(old, _record(model="new.pt", sha="cd" * 32))
    assert model == (
        "was made by model m.pt (sha256 abababababab..), this run uses new.pt (sha256 cdcdcdcdcdcd..)"
    )
    config = fingerprint_difference(old, _record(image={"method": "dsrg"}))
    assert config == "was made with image.method='cam_crf', this run has image.method='dsrg'"
    assert fingerprint_difference(old, _record(version="0.1.0+def")) is None  # same release
    code = fingerprint_difference(old, _record(version="0.2.0+def"))
    assert code == "was made by code version 0.1.0+abc, this run is 0.2.0+def"


def test_same_uri_retrained_model_differs_by_its_checksum():
    assert "sha256" in fingerprint_difference(_record(sha="ab" * 32), _record(sha="ef" * 32))


def _interrupted_set(out, record):
    """What a run killed after its first batch leaves: run.json's fingerprint, a part, a mask."""
    with claim(str(out), record):
        (out / schema.PARTS_DIR).mkdir()
        (out / schema.PARTS_DIR / "p.parquet").write_bytes(b"part")
        (out / schema.MASKS_DIR).mkdir()
        (out / schema.MASKS_DIR / "a.png").write_bytes(b"png")


def test_a_rerun_resumes_only_the_same_fingerprint(tmp_path):
    out = tmp_path / "labels"
    _interrupted_set(out, _record())
    run = json.loads((out / schema.RUN_NAME).read_text())
    assert run["fingerprint"] == _record() and run["complete"] is False
    with claim(str(out), _record()):  # the same model and config: resume
        pass
    with pytest.raises(LabelSetError) as error, claim(str(out), _record(image={"method": "dsrg"})):
        pass
    assert str(error.value) == (
        f"{out} was made with image.method='cam_crf', this run has image.method='dsrg'; "
        "rerun with --overwrite to start over or choose another --out"
    )
    assert (out / schema.MASKS_DIR / "a.png").exists()  # refused before touching anything


def test_overwrite_removes_the_old_set_and_records_the_new_fingerprint(tmp_path):
    out = tmp_path / "labels"
    _interrupted_set(out, _record())
    new = _record(model="other.pt", sha="99" * 32)
    with claim(str(out), new, overwrite=True):
        assert sorted(p.name for p in out.iterdir()) == [labelset_lock.LOCK_NAME, schema.RUN_NAME]
    assert json.loads((out / schema.RUN_NAME).read_text())["fingerprint"] == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]  # nothing left aside
    assert not (out / labelset_lock.LOCK_NAME).exists()  # released


def test_a_label_set_without_fingerprint_is_not_resumed(tmp_path):
    (tmp_path / schema.PARTS_DIR).mkdir()
    (tmp_path / schema.PARTS_DIR / "p.parquet").write_bytes(b"part")
    with pytest.raises(LabelSetError, match="without a fingerprint in run.json"):
        check_resumable(str(tmp_path), _record())
    check_resumable(str(tmp_path / "empty"), _record())  # nothing there: a fresh start


def test_out_must_be_a_folder_or_creatable(tmp_path):
    file = tmp_path / "outfile.txt"
    file.write_text("x")
    with pytest.raises(LabelSetError, match=r"outfile.txt is a file, not a folder"):
        require_out_folder(str(file))
    with pytest.raises(LabelSetError, match=r"cannot be created: .*outfile.txt is a file"):
        require_out_folder(str(file / "labels"))
    require_out_folder(str(tmp_path / "new" / "labels"))
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_second_writer_stops_at_once_naming_the_first(tmp_path):
    out = str(tmp_path / "labels")
    with labelset_lock.held(out):
        started = time.time()
        with pytest.raises(LabelSetError) as error, labelset_lock.held(out):
            pass
        assert time.time() - started < 5
    message = str(error.value)
    assert "is being written by another run" in message and socket.gethostname() in message
    with labelset_lock.held(out):  # released: the next run gets it
        pass


def _write_lease(out, **lease):
    out.mkdir(parents=True, exist_ok=True)
    base = {"owner": "old", "host": socket.gethostname(), "pid": 1, "expires": time.time() + 600}
    (out / labelset_lock.LOCK_NAME).write_text(json.dumps({**base, **lease}))


def test_a_dead_local_runs_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lease(tmp_path, pid=dead.pid)
    with labelset_lock.held(str(tmp_path)) as owner:
        lease = json.loads((tmp_path / labelset_lock.LOCK_NAME).read_text())
        assert lease["owner"] == owner and lease["pid"] != dead.pid
    assert [p.name for p in tmp_path.iterdir()] == []  # no takeover marker left behind


def test_a_live_remote_lease_holds_until_it_expires(tmp_path):
    _write_lease(tmp_path, host="elsewhere", pid=999999)
    with (
        pytest.raises(LabelSetError, match="pid 999999 on elsewhere"),
        labelset_lock.held(str(tmp_path)),
    ):
        pass
    _write_lease(tmp_path, host="elsewhere", pid=999999, expires=time.time() - 1)
    with labelset_lock.held(str(tmp_path)):
        pass


def test_the_heartbeat_renews_the_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(labelset_lock, "HEARTBEAT_S", 0.1)
    with labelset_lock.held(str(tmp_path)):
        first = json.loads((tmp_path / labelset_lock.LOCK_NAME).read_text())["expires"]
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(0.2)
            now = json.loads((tmp_path / labelset_lock.LOCK_NAME).read_text())["expires"]
            if now > first:
                break
        assert now > first


def test_a_run_that_stopped_before_labelling_leaves_nothing_to_refuse(tmp_path):
    with claim(str(tmp_path), _record()):  # e.g. Ray did not start
        pass
    with claim(str(tmp_path), _record(image={"method": "dsrg"})):
        pass
    run = json.loads((tmp_path / schema.RUN_NAME).read_text())
    assert run["fingerprint"]["config"]["image.method"] == "dsrg"  # the record follows the run
