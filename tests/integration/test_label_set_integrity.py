"""A label set never mixes models or configs, and has one writer, with a real local Ray.

    .venv/bin/python -m pytest tests/integration/test_label_set_integrity.py -q

A second run writing the same --out stops at once while the first finishes; a rerun with another
config stops before any work and --overwrite starts over; a run where every item fails is an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from badinputs import build_good_collection

from pipeline import labelset_lock, schema, storage
from pipeline.cluster.dataflow import run_pseudo_label
from pipeline.label_config import PseudoLabelConfig, ResourcesConfig, StageResources
from pipeline.output import LabelSetError, read_table

REPO = Path(__file__).resolve().parents[2]
WRITE = {"actors": 1, "num_cpus": 0.25, "batch_size": 2}  # many parts: a run lasts a while
CFG = PseudoLabelConfig(resources=ResourcesConfig(write=StageResources(**WRITE)))
PATIENCE_S = 600  # this box is often shared by other jobs


def _rows(out: Path) -> list[dict]:
    return read_table(str(out / schema.MANIFEST_NAME)).to_pylist()


def _parts(out: Path) -> list[str]:
    return storage.list_files(str(out / schema.PARTS_DIR), ".parquet")


@pytest.fixture(scope="module")
def collection(ray_session, tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("integrity")
    expected = build_good_collection(root / "collection", 8, side=96)
    return root / "collection", expected


def _cli(collection: Path, out: Path, ray_address: str) -> list[str]:
    config = out.parent / f"{out.name}.yaml"
    config.write_text("pseudo_label:\n  resources:\n    write: " + json.dumps(WRITE) + "\n")
    return [sys.executable, "-m", "pipeline.cli", "pseudo-label", "--collection", str(collection),
            "--model", "none", "--out", str(out), "--ray-address", ray_address,
            "--config", str(config)]  # fmt: skip


def test_a_second_writer_stops_at_once_and_the_first_finishes(collection, ray_session, tmp_path):
    root, expected = collection
    out, address = tmp_path / "labels", ray_session.get_runtime_context().gcs_address
    first = subprocess.Popen(_cli(root, out, address), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + PATIENCE_S
        while not _parts(out) and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None and _parts(out), "the first run ended before its first part"
        started = time.time()
        second = subprocess.run(_cli(root, out, address), cwd=REPO, capture_output=True,
                                text=True, timeout=PATIENCE_S)  # fmt: skip
        seconds = time.time() - started
        assert first.wait(PATIENCE_S) == 0, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 1 and "is being written by another run (pid " in second.stderr
    assert str(first.pid) in second.stderr.splitlines()[-1]
    assert "Ray" not in second.stderr and seconds < 120, (seconds, second.stderr)
    rows = _rows(out)
    assert len(rows) == expected and {r[schema.STATUS] for r in rows} == {schema.LABELLED}
    assert not (out / labelset_lock.LOCK_NAME).exists()


def test_another_config_is_refused_before_any_work_and_overwrite_starts_over(collection, tmp_path):
    root, expected = collection
    out = tmp_path / "labels"
    run_pseudo_label(str(root), None, str(out), CFG)
    parts_before = _parts(out)
    dsrg = PseudoLabelConfig(
        image=type(CFG.image)(method="dsrg"), resources=CFG.resources
    )  # the rerun: same --out, another image method
    with pytest.raises(LabelSetError, match=r"was made with image.method='cam_crf', this run"):
        run_pseudo_label(str(root), None, str(out), dsrg)
    assert _parts(out) == parts_before  # nothing was labelled
    info = run_pseudo_label(str(root), None, str(out), dsrg, overwrite=True)
    assert info["rows_this_run"] == expected  # every item labelled again, none kept
    assert not set(_parts(out)) & set(parts_before)
    run = json.loads((out / schema.RUN_NAME).read_text())
    assert run["fingerprint"]["config"]["image.method"] == "dsrg"
    assert len(_rows(out)) == expected
    again = run_pseudo_label(str(root), None, str(out), dsrg)  # the same config resumes
    assert again["rows_this_run"] == 0


def test_a_run_where_every_item_fails_is_an_error_with_the_reasons(ray_session, tmp_path):
    root = tmp_path / "broken"
    (root / "media").mkdir(parents=True)
    rows = []
    for i in range(3):
        (root / "media" / f"b{i}.jpg").write_bytes(b"not a jpeg at all")
        rows.append(json.dumps({"uri": f"media/b{i}.jpg", "tags": ["dog"]}))
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "labels"
    with pytest.raises(
        LabelSetError, match=r"every one of the 3 rows failed.*'cannot decode image"
    ):
        run_pseudo_label(str(root), None, str(out), CFG)
    assert {r[schema.STATUS] for r in _rows(out)} == {schema.FAILED}  # still recorded
