"""`webseg pseudo-label` / `webseg predict` stop before Ray starts, with one line naming the problem:
a junk or missing model, --out a file, a misspelt manifest column, a label set made otherwise, a
label set another run is writing, an S3 endpoint that does not answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipeline import cli, labelset_lock, schema
from pipeline.config import from_dict
from pipeline.label_config import PseudoLabelConfig
from pipeline.labelset_guard import claim, fingerprint
from pipeline.preflight import PSEUDO_LABEL_EXCLUDE
from pipeline.sample_data import generate


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("coll")), images=2, videos=0)


def _ray_running() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


_RAY_STARTS: list = []


@pytest.fixture(autouse=True)
def count_ray_starts(monkeypatch):
    """Record every runtime.init_ray the command under test makes: integration tests may share this
    process and its Ray, so `ray.is_initialized()` alone cannot tell whether the command started it."""
    from pipeline.cluster import runtime

    real = runtime.init_ray
    _RAY_STARTS.clear()
    monkeypatch.setattr(runtime, "init_ray", lambda *a, **k: (_RAY_STARTS.append(a), real(*a, **k)))


def _fails(capsys, *argv: str) -> str:
    """Run webseg in this process; the one error line it printed (exit status 1, Ray not started)."""
    ray_before = _ray_running()
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert not _RAY_STARTS and (ray_before or not _ray_running()), f"Ray was started: {err}"
    lines = [line for line in err.splitlines() if " error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def test_a_junk_model_is_one_line_from_the_real_command(collection, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(64))
    out = tmp_path / "labels"
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "pseudo-label", "--collection", collection,
         "--model", str(junk), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in done.stderr and "Ray" not in done.stderr, done.stderr
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        f"webseg pseudo-label: error: ModelError: --model {junk} is not a torch checkpoint file"
    ), done.stderr
    assert not out.exists() and time.time() - started < 300


def test_out_that_is_a_file(collection, tmp_path, capsys):
    file = tmp_path / "outfile.txt"
    file.write_text("x")
    line = _fails(capsys, "pseudo-label", "--collection", collection, "--model", "none",
                  "--out", str(file))  # fmt: skip
    assert line.endswith(f"LabelSetError: --out {file} is a file, not a folder")


def test_misspelt_tags_column(tmp_path, capsys):
    (tmp_path / "manifest.jsonl").write_text('{"uri": "a.jpg", "tag": ["dog"]}\n')
    line = _fails(capsys, "pseudo-label", "--collection", str(tmp_path), "--model", "none",
                  "--out", str(tmp_path / "labels"))  # fmt: skip
    assert (
        "ManifestError: " in line and "unknown column 'tag'; allowed: id, uri, kind, tags" in line
    )


def test_rerun_with_another_config_names_the_difference(collection, tmp_path, capsys):
    out = tmp_path / "labels"
    made = fingerprint(None, None, PseudoLabelConfig(), exclude=PSEUDO_LABEL_EXCLUDE)
    with claim(str(out), made):  # what an interrupted first run leaves
        (out / schema.PARTS_DIR).mkdir()
        (out / schema.PARTS_DIR / "p.parquet").write_bytes(b"part")
    config = tmp_path / "dsrg.yaml"
    config.write_text("pseudo_label:\n  image:\n    method: dsrg\n")
    line = _fails(capsys, "pseudo-label", "--collection", collection, "--model", "none",
                  "--out", str(out), "--config", str(config))  # fmt: skip
    assert line.endswith(
        f"LabelSetError: {out} was made with image.method='cam_crf', this run has "
        "image.method='dsrg'; rerun with --overwrite to start over or choose another --out"
    )
    assert (out / schema.PARTS_DIR / "p.parquet").exists()
    assert from_dict(PseudoLabelConfig, {"image": {"method": "dsrg"}})  # a valid config


def test_an_output_another_run_writes_stops_at_once(collection, tmp_path, capsys):
    out = tmp_path / "labels"
    out.mkdir()
    lease = {"owner": "x", "host": socket.gethostname(), "pid": os.getpid(),  # alive: this test
             "acquired": "now", "expires": time.time() + 600}  # fmt: skip
    (out / labelset_lock.LOCK_NAME).write_text(json.dumps(lease))
    line = _fails(capsys, "pseudo-label", "--collection", collection, "--model", "none",
                  "--out", str(out))  # fmt: skip
    assert f"{out} is being written by another run (pid {os.getpid()} on " in line


def test_predict_with_a_missing_model(collection, tmp_path, capsys):
    line = _fails(capsys, "predict", "--model", str(tmp_path / "m.pt"), "--collection", collection,
                  "--out", str(tmp_path / "pred"))  # fmt: skip
    assert line.endswith(f"ModelError: --model {tmp_path / 'm.pt'}: {tmp_path / 'm.pt'} not found")


def test_an_s3_endpoint_that_is_down_is_named_within_seconds(tmp_path, capsys, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.time()
    line = _fails(capsys, "pseudo-label", "--collection", "s3://bucket/collection", "--model",
                  "none", "--out", str(tmp_path / "labels"))  # fmt: skip
    assert f"EndpointError: S3 endpoint http://127.0.0.1:{port} did not answer within 5 s" in line
    assert time.time() - started < 20
