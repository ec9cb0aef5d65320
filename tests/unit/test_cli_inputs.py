"""Every command that reads a collection or a label set fails at once, with a message naming what is
missing, before it starts Ray or writes anything."""

import subprocess
import sys

import pytest

from pipeline.evaluate.inputs import list_gt, read_manifest
from pipeline.output import LabelSetError


def _collection_without_gt(root):
    root.mkdir()
    (root / "manifest.jsonl").write_text('{"id": "a", "uri": "media/a.jpg", "kind": "image"}\n')
    return root


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "command, message",
    [
        ("predict --model m.pt --collection {missing} --out {out}", "no manifest"),
        ("retrain --collection {coll} --holdout {missing} --work {out}", "no manifest"),
        ("retrain --collection {missing} --holdout {coll} --work {out}", "no manifest"),
        ("retrain --collection {coll} --holdout {coll} --work {out}", "no ground truth"),
        ("train-segmenter --labels {missing} --out {out}/m.pt", "no label set"),
        (
            "train-segmenter --labels {labels} --val-collection {missing} --out {out}/m",
            "no manifest",
        ),
        (
            "train-segmenter --labels {labels} --val-collection {coll} --out {out}/m",
            "no ground truth",
        ),
        ("evaluate --labels {missing} --collection {coll}", "no label set"),
        ("report --labels {missing} --out {out}/r.html", "no label set"),
    ],
)
def test_missing_input_fails_before_ray(tmp_path, command, message):
    coll = _collection_without_gt(tmp_path / "coll")
    labels = tmp_path / "labels"  # only its manifest's presence is checked before Ray starts
    labels.mkdir()
    (labels / "manifest.parquet").write_bytes(b"")
    paths = {
        "missing": tmp_path / "nothing",
        "out": tmp_path / "out",
        "coll": coll,
        "labels": labels,
    }
    done = _run(*command.format(**paths).split())
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert str(paths["missing"] if "{missing}" in command else coll) in done.stderr
    assert "Ray" not in done.stderr and not paths["out"].exists()


def test_label_set_reader_names_the_missing_manifest(tmp_path):
    with pytest.raises(LabelSetError, match="manifest.parquet not found"):
        read_manifest(str(tmp_path))


def test_collection_without_ground_truth_is_an_error_not_an_empty_score(tmp_path):
    coll = _collection_without_gt(tmp_path / "coll")
    with pytest.raises(ValueError, match="no ground truth under"):
        list_gt(str(coll))
    (coll / "gt").mkdir()
    with pytest.raises(ValueError, match="no ground truth under"):
        list_gt(str(coll))
