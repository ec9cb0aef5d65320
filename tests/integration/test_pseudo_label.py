"""pseudo-label end to end on a real subset of the dev collection, with a local Ray."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.checkpoint import save_model
from pipeline.cluster.dataflow import run_pseudo_label
from pipeline.config import from_dict
from pipeline.label_config import PseudoLabelConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig

FAST = {
    "decode": {"max_frames_per_video": 6, "window_frames": 4},
    "cam": {"input_size": 96, "flip": False},
}


@pytest.fixture(scope="module")
def subset(tmp_path_factory, dev_collection):
    """6 images (one negative, horses, a person) and one video of the dev collection, plus a
    missing file, listed by absolute uri in a fresh manifest."""
    rows = [
        json.loads(line) for line in (dev_collection / "manifest.jsonl").read_text().splitlines()
    ]
    images = [r for r in rows if r["kind"] == "image"]
    picked = images[:3] + [r for r in images if r["id"].startswith("weizmann")][:3]
    picked.append(next(r for r in rows if r["id"] == "segtrack_bmx"))
    picked.append({"id": "ghost", "uri": "media/ghost.jpg", "tags": ["dog"]})
    root = tmp_path_factory.mktemp("subset")
    for row in picked:
        if row["id"] != "ghost":
            row["uri"] = str(dev_collection / row["uri"])
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    return root, picked, dev_collection


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained (randomly initialised) classifier: exercises the CAM actors end to end."""
    cfg = ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16)
    uri = str(tmp_path_factory.mktemp("model") / "classifier.pt")
    save_model(CamClassifier(cfg), cfg, uri, classes=schema.VOC_CLASSES)
    return uri


def read_manifest(out):
    return pq.read_table(out / schema.MANIFEST_NAME).to_pylist()


def check_contract(out, picked, dev_collection):
    rows = read_manifest(out)
    assert {r[schema.ID] for r in rows} == {p["id"] for p in picked}
    assert all(r[schema.STATUS] in schema.STATUSES for r in rows)
    ghost = [r for r in rows if r[schema.ID] == "ghost"]
    assert len(ghost) == 1 and ghost[0][schema.STATUS] == schema.FAILED
    assert "not found" in ghost[0][schema.REASON]
    video = [r for r in rows if r[schema.ID] == "segtrack_bmx"]
    assert [r[schema.FRAME_INDEX] for r in video] == list(range(6))
    for row in rows:
        if row[schema.STATUS] != schema.LABELLED:
            assert row[schema.REASON] and row[schema.MASK_URI] is None
            continue
        mask = cv2.imread(str(out / row[schema.MASK_URI]), cv2.IMREAD_UNCHANGED)
        gt_path = schema.mask_path(row[schema.ID], row[schema.FRAME_INDEX], "gt")
        gt = cv2.imread(str(dev_collection / gt_path), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.ndim == 2 and mask.shape == gt.shape
        allowed = {0, schema.IGNORE} | {schema.VOC_CLASSES.index(t) for t in row[schema.TAGS]}
        assert set(np.unique(mask).tolist()) <= allowed
    run = json.loads((out / schema.RUN_NAME).read_text())
    assert run["counts"]["rows"] == len(rows) and run["items"] == len(picked)
    assert set(run["stage_seconds"]) >= {"decode", "cam", "refine", "write"}
    return rows


def test_pseudo_label_with_classifier_then_resume(ray_session, subset, classifier, tmp_path):
    root, picked, dev = subset
    # the subset's 3 horse images are under the default min_images: let them have a head
    cfg = from_dict(PseudoLabelConfig, {**FAST, "pixel_head": {"min_images": 1}})
    out = tmp_path / "labels"
    first = run_pseudo_label(str(root), classifier, str(out), cfg)
    rows = check_contract(out, picked, dev)
    assert first["rows_this_run"] == len(rows)
    labelled = [r for r in rows if r[schema.STATUS] == schema.LABELLED and r[schema.TAGS]]
    assert labelled and all(json.loads(r[schema.SCORES]) for r in labelled)
    assert (out / "cams").is_dir()
    head = out / schema.PIXEL_HEAD_NAME  # the image route's first pass fitted a pixel head
    assert head.is_file() and first["stage_seconds"]["pixel_head"] > 0
    fitted = head.read_bytes()

    second = run_pseudo_label(str(root), classifier, str(out), cfg)
    assert second["rows_this_run"] == 1  # only the failed item is retried
    assert read_manifest(out) == rows
    assert head.read_bytes() == fitted  # the resumed run reuses the head, it does not refit


def test_pseudo_label_pixel_head_off_labels_in_one_pass(ray_session, subset, classifier, tmp_path):
    root, picked, dev = subset
    cfg = from_dict(PseudoLabelConfig, {**FAST, "pixel_head": {"enabled": False}})
    out = tmp_path / "labels"
    info = run_pseudo_label(str(root), classifier, str(out), cfg)
    check_contract(out, picked, dev)
    assert not (out / schema.PIXEL_HEAD_NAME).exists() and "pixel_head" not in info["stage_seconds"]


def test_pseudo_label_without_classifier(ray_session, subset, tmp_path):
    root, picked, dev = subset
    out = tmp_path / "labels"
    run_pseudo_label(str(root), None, str(out), from_dict(PseudoLabelConfig, FAST))
    check_contract(out, picked, dev)
