"""Bad inputs, faults and resume with a real local Ray: every item accounted for, nothing twice.

    .venv/bin/python -m pytest tests/integration/test_reliability.py -q

Uses the session Ray of tests/conftest.py; the driver-kill and S3-outage tests run the real CLI in
a subprocess attached to that Ray. The S3 server is moto's ThreadedMotoServer on a loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from badinputs import build_corpus, build_good_collection

from pipeline import cli, schema, storage
from pipeline.cluster.dataflow import run_pseudo_label
from pipeline.label_config import PseudoLabelConfig, ResourcesConfig, StageResources
from pipeline.output import read_table

REPO = Path(__file__).resolve().parents[2]
# small write batches: many manifest parts, so a kill lands between parts
WRITE = {"actors": 1, "num_cpus": 0.25, "batch_size": 2}
CFG = PseudoLabelConfig(resources=ResourcesConfig(write=StageResources(**WRITE)))
CONFIG_YAML = "pseudo_label:\n  resources:\n    write: " + json.dumps(WRITE) + "\n"
LOST = "no output was produced"
GOOD_IMAGES = 10
PATIENCE_S = 600  # generous: this box is often shared by other jobs


def manifest(out: str) -> list[dict]:
    return read_table(storage.join(out, schema.MANIFEST_NAME)).to_pylist()


def keys(rows: list[dict]) -> list[tuple]:
    return [(r[schema.SOURCE_INDEX], r[schema.ID], r[schema.FRAME_INDEX]) for r in rows]


def assert_complete(rows: list[dict], expected_rows: int) -> None:
    """Every row once, none lost (the safety net's reason never appears)."""
    assert len(keys(rows)) == len(set(keys(rows))) == expected_rows
    assert not [r for r in rows if LOST in (r[schema.REASON] or "")]


def parts(out: str) -> list[str]:
    return storage.list_files(storage.join(out, schema.PARTS_DIR), ".parquet")


def cli_command(collection: Path, out: str, ray_address: str) -> list[str]:
    config = collection.parent / "job.yaml"
    config.write_text(CONFIG_YAML)
    return [sys.executable, "-m", "pipeline.cli", "pseudo-label", "--collection", str(collection),
            "--model", "none", "--out", out, "--ray-address", ray_address,
            "--config", str(config)]  # fmt: skip


def _ctrl_c_reaches_the_child() -> None:
    """A suite started in the background of a non-interactive shell (`make test &`) inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt: give the CLI under test the
    terminal's default, as a user pressing Ctrl-C has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(check, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the job ended first ({process.returncode})")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_address(ray_session) -> str:
    return ray_session.get_runtime_context().gcs_address


# ----------------------------------------------------------------------------- bad-input corpus


@pytest.fixture(scope="module")
def corpus_run(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    cases = build_corpus(root / "collection")
    out = str(root / "labels")
    info = run_pseudo_label(str(root / "collection"), None, out, CFG)
    return root, cases, out, info, manifest(out)


def test_every_bad_input_gets_its_status_and_reason(corpus_run):
    _, cases, out, _, rows = corpus_run
    by_index = defaultdict(list)
    for row in rows:
        by_index[row[schema.SOURCE_INDEX]].append(row)
    assert sorted(by_index) == [c.index for c in cases]  # every input item has a row
    for case in cases:
        got = by_index[case.index]
        assert {r[schema.ID] for r in got} == {case.item_id}, case.name
        assert {r[schema.STATUS] for r in got} == {case.status}, (case.name, got[0][schema.REASON])
        if case.reason:
            assert len(got) == 1 and case.reason in got[0][schema.REASON], case.name
            assert got[0][schema.MASK_URI] is None
        elif case.frames is not None:
            assert [r[schema.FRAME_INDEX] for r in got] == list(range(case.frames)), case.name
        else:
            assert len(got) == 1 and got[0][schema.FRAME_INDEX] is None, case.name
        for row in got:
            if row[schema.MASK_URI]:
                mask = cv2.imread(os.path.join(out, row[schema.MASK_URI]), cv2.IMREAD_UNCHANGED)
                assert mask.shape == case.shape and mask.dtype == "uint8", case.name


def test_summary_counts_every_status_and_reason(corpus_run):
    _, cases, _, info, rows = corpus_run
    counts = info["counts"]
    assert counts["rows"] == len(rows) == sum(c.frames or 1 for c in cases)
    failed = sum(c.status == schema.FAILED for c in cases)
    assert counts["status"] == {schema.LABELLED: len(rows) - failed, schema.FAILED: failed}
    assert sum(counts["failed_reasons"].values()) == failed
    assert info["unknown_tags"] == {"unicorn": 1, "zebra": 1}


def test_outputs_are_whole_and_stay_inside_the_output_root(corpus_run):
    root, _, out, _, rows = corpus_run
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]  # no half-written file left
    assert {p.relative_to(out).parts[0] for p in files} <= {
        schema.MANIFEST_NAME,
        schema.RUN_NAME,
        schema.MASKS_DIR,
        schema.PARTS_DIR,
        "cams",
    }
    assert not list(root.rglob("outside*"))  # the id '../../outside' wrote nothing anywhere
    for row in rows:
        if row[schema.MASK_URI]:
            assert (
                cv2.imread(os.path.join(out, row[schema.MASK_URI]), cv2.IMREAD_UNCHANGED)
                is not None
            )


def test_cli_rerun_exits_zero_retries_failures_and_keeps_the_manifest(corpus_run, ray_address,
                                                                      capsys):  # fmt: skip
    root, cases, out, _, rows = corpus_run
    code = cli.main(["--json", "pseudo-label", "--collection", str(root / "collection"), "--model",
                     "none", "--out", out, "--ray-address", ray_address])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["counts"]["status"][schema.FAILED] == sum(c.reason is not None for c in cases)
    assert manifest(out) == rows
    info = json.loads((Path(out) / schema.RUN_NAME).read_text())
    # only the failed items were retried; the videos were decoded again but skipped their windows
    assert info["rows_this_run"] == sum(c.status == schema.FAILED for c in cases)


def test_malformed_manifest_can_stop_with_the_line_number(corpus_run, ray_address, tmp_path,
                                                          capsys):  # fmt: skip
    root, cases, _, _, _ = corpus_run
    config = tmp_path / "strict.yaml"
    config.write_text("pseudo_label:\n  collection:\n    malformed_rows: error\n")
    code = cli.main(["pseudo-label", "--collection", str(root / "collection"), "--model", "none",
                     "--out", str(tmp_path / "labels"), "--ray-address", ray_address,
                     "--config", str(config)])  # fmt: skip
    err = capsys.readouterr().err
    line = next(c.index for c in cases if c.reason == "malformed manifest row") + 1
    assert code == 1 and "malformed manifest row: " in err and f"line {line}: " in err
    assert "Traceback" not in err and not (tmp_path / "labels" / schema.MANIFEST_NAME).exists()


# ----------------------------------------------------------------------------- resume and faults


@pytest.fixture(scope="module")
def good(ray_session, tmp_path_factory):
    """A clean collection and the manifest of an uninterrupted run over it."""
    root = tmp_path_factory.mktemp("good")
    expected = build_good_collection(root / "collection", GOOD_IMAGES, side=96)
    out = str(root / "baseline")
    run_pseudo_label(str(root / "collection"), None, out, CFG)
    rows = manifest(out)
    assert_complete(rows, expected)
    assert {r[schema.STATUS] for r in rows} == {schema.LABELLED}
    return root / "collection", rows


def test_driver_killed_mid_job_then_rerun_loses_and_duplicates_nothing(good, ray_address,
                                                                       tmp_path):  # fmt: skip
    collection, baseline = good
    out = str(tmp_path / "labels")
    job = subprocess.Popen(cli_command(collection, out, ray_address), cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: len(parts(out)) >= 1, PATIENCE_S, "a first manifest part", job)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait(10)
    assert not os.path.exists(os.path.join(out, schema.MANIFEST_NAME))  # killed mid-job
    done_before = sum(read_table(p).num_rows for p in parts(out))
    assert 0 < done_before < len(baseline)
    info = run_pseudo_label(str(collection), None, out, CFG)
    assert info["rows_this_run"] <= len(baseline) - done_before
    assert manifest(out) == baseline


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_keeps_parts_says_how_to_resume_and_a_rerun_resumes(
    good, ray_address, tmp_path, signum, code
):
    collection, baseline = good
    out = str(tmp_path / "labels")
    job = subprocess.Popen(cli_command(collection, out, ray_address), cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=_ctrl_c_reaches_the_child)  # fmt: skip
    try:
        wait_for(lambda: len(parts(out)) >= 1, PATIENCE_S, "a first manifest part", job)
        job.send_signal(signum)
        _, err = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode == code, err
    assert "Traceback" not in err and "run the same command again to resume" in err, err
    assert not os.path.exists(os.path.join(out, "_lock.json")), "the lock was not released"
    done_before = sum(read_table(p).num_rows for p in parts(out))
    assert done_before >= 1
    rerun = subprocess.run(cli_command(collection, out, ray_address), cwd=REPO,
                           capture_output=True, text=True, timeout=PATIENCE_S)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert manifest(out) == baseline


def map_worker_pids(stage: str) -> list[int]:
    """PIDs of the live Ray Data actors of one stage (their repr is 'MapWorker(MapBatches(X))')."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()  # the GCS actor table: no dashboard needed
    actors = [
        gcs_pb2.ActorTableData.FromString(raw) for raw in accessor.get_actor_table(None, None)
    ]
    alive = gcs_pb2.ActorTableData.ActorState.Value("ALIVE")
    return [a.pid for a in actors if a.state == alive and stage in a.repr_name and a.pid]


@pytest.mark.parametrize(
    "fused, stages", [(True, ["LabelItemsStage"]), (False, ["CamStage", "RefineStage"])]
)
def test_cam_and_refine_actors_killed_mid_job_are_restarted_and_nothing_is_lost(
    good, tmp_path, fused, stages
):
    collection, baseline = good
    out = str(tmp_path / "labels")
    result: dict = {}
    cfg = replace(CFG, resources=replace(CFG.resources, fuse_cam_refine=fused))

    def job() -> None:
        try:
            result["info"] = run_pseudo_label(str(collection), None, out, cfg)
        except BaseException as error:  # surfaced by the assertion below
            result["error"] = error

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(lambda: map_worker_pids(stages[-1]), PATIENCE_S, f"a live {stages[-1]} actor")
    killed = [pid for stage in stages for pid in map_worker_pids(stage)[:1]]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    thread.join(PATIENCE_S)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert not set(killed) & set(map_worker_pids("Stage"))  # the killed processes stayed dead
    rows = manifest(out)
    assert_complete(rows, len(baseline))
    assert rows == baseline


# ----------------------------------------------------------------------------- S3 outages


class MotoS3:
    """moto's in-process S3 server on a fixed loopback port; stop() and start() keep its data."""

    def __init__(self, port: int):
        from moto.server import ThreadedMotoServer

        self.port, self.factory, self.server = port, ThreadedMotoServer, None

    def start(self) -> None:
        self.server = self.factory(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture()
def s3(monkeypatch):
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    s3fs = pytest.importorskip("s3fs")
    server = MotoS3(free_port())
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
        "AWS_ACCESS_KEY_ID": "webseg-test",
        "AWS_SECRET_ACCESS_KEY": f"secret-{uuid.uuid4().hex}",  # must never reach a log
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",  # botocore's own retries off: the backoff tested is ours
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.2)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep an old endpoint
    server.start()
    boto3.client("s3").create_bucket(Bucket="webseg")
    yield server, env
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_write_retries_with_backoff_through_a_server_restart(s3):
    server, _ = s3
    storage.write_bytes("s3://webseg/x/before.bin", b"before")
    server.stop()
    threading.Timer(1.0, server.start).start()
    started = time.time()
    storage.write_bytes("s3://webseg/x/after.bin", b"after")
    assert time.time() - started > 0.5  # it waited for the server rather than failing
    assert storage.read_bytes("s3://webseg/x/before.bin") == b"before"
    assert storage.read_bytes("s3://webseg/x/after.bin") == b"after"


def test_s3_objects_written_by_another_process_are_seen_at_once(s3):
    """The driver lists parts that Ray workers wrote: no stale listing cache may hide them."""
    import boto3

    storage.write_bytes("s3://webseg/l/_parts/a.parquet", b"a")
    assert storage.list_files("s3://webseg/l/_parts", ".parquet") == [
        "s3://webseg/l/_parts/a.parquet"
    ]
    assert not storage.exists("s3://webseg/l/manifest.parquet")
    client = boto3.client("s3")
    client.put_object(Bucket="webseg", Key="l/_parts/b.parquet", Body=b"b")
    client.put_object(Bucket="webseg", Key="l/manifest.parquet", Body=b"m")
    assert len(storage.list_files("s3://webseg/l/_parts", ".parquet")) == 2
    assert storage.read_bytes("s3://webseg/l/manifest.parquet") == b"m"


def test_s3_outage_longer_than_the_retries_fails_with_a_clear_error(s3, monkeypatch):
    server, _ = s3
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 3)
    server.stop()
    with pytest.raises(storage.StorageError, match=r"write s3://webseg/y.bin failed after 3 "
                                                   r"attempts: Could not connect"):  # fmt: skip
        storage.write_bytes("s3://webseg/y.bin", b"lost")


def test_pseudo_label_to_s3_survives_a_server_restart_mid_job(good, s3, ray_address, tmp_path):
    collection, baseline = good
    server, env = s3
    out, log = "s3://webseg/labels", tmp_path / "job.log"
    job_env = {**os.environ, **env, "WEBSEG_IO_RETRIES": "8", "WEBSEG_IO_RETRY_DELAY": "0.25"}
    with open(log, "wb") as output:
        job = subprocess.Popen(cli_command(collection, out, ray_address), cwd=REPO,
                               env=job_env, stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: len(parts(out)) >= 1, PATIENCE_S, "a first part on S3", job)
            assert not storage.exists(storage.join(out, schema.MANIFEST_NAME))
            server.stop()
            time.sleep(2.0)
            server.start()
            assert job.wait(PATIENCE_S) == 0, log.read_text()[-3000:]
        finally:
            if job.poll() is None:
                job.kill()
    rows = manifest(out)
    assert_complete(rows, len(baseline))
    assert rows == baseline
    secret = env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in log.read_text(errors="replace")
    assert secret not in storage.read_text(storage.join(out, schema.RUN_NAME))
