"""Tests of pipeline.evaluate on tiny hand-computed arrays and a tiny label set on disk."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.evaluate.metrics import ConfusionMatrix, foreground_iou
from pipeline.evaluate.score import evaluate_labels
from pipeline.evaluate.summary import format_table

U8 = np.uint8


def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3)
    cm.add(np.array([[0, 1], [1, 1]], U8), np.array([[0, 1], [0, 255]], U8))
    assert cm.mat.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    iou = cm.iou()
    assert iou[:2].tolist() == [0.5, 0.5] and math.isnan(iou[2])  # class 2 absent: not averaged
    assert cm.miou() == 0.5
    assert cm.pixel_accuracy() == pytest.approx(2 / 3)


def test_confusion_matrix_counts_classes_present_only_in_pred():
    cm = ConfusionMatrix(3)
    cm.add(np.array([2, 0, 0], U8), np.array([0, 0, 0], U8))
    assert cm.iou()[0] == pytest.approx(2 / 3) and cm.iou()[2] == 0.0
    assert cm.miou() == pytest.approx(1 / 3)


def test_confusion_matrix_rejects_unmapped_ignore_and_bad_gt():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="pred value 255"):
        cm.add(np.array([255], U8), np.array([0], U8))
    with pytest.raises(ValueError, match="gt value 7"):
        cm.add(np.array([0], U8), np.array([7], U8))
    cm.add(np.array([255], U8), np.array([255], U8))  # ignored gt: any prediction is fine
    assert cm.mat.sum() == 0 and math.isnan(cm.miou())


def test_foreground_iou_rules():
    gt = np.array([[0, 1, 1, 0], [0, 1, 1, 255]], U8)
    pred = np.array([[0, 1, 1, 1], [0, 1, 255, 1]], U8)
    assert foreground_iou(pred, gt) == pytest.approx(3 / 5)
    assert foreground_iou(np.zeros((2, 2), U8), np.zeros((2, 2), U8)) == 1.0
    assert foreground_iou(np.zeros((2, 2), U8), np.full((2, 2), 3, U8)) == 0.0


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _row(item_id, kind, status, frame=None, reason=None):
    mask = schema.mask_path(item_id, frame) if status == schema.LABELLED else None
    return {"id": item_id, "uri": f"media/{item_id}", "kind": kind, "tags": ["cat"],
            "frame_index": frame, "status": status, "reason": reason, "mask_uri": mask,
            "scores": json.dumps({"cat": 0.9})}  # fmt: skip


def _write_manifest(labels, rows):
    labels.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("uri", pa.string()), ("kind", pa.string()),
        ("tags", pa.list_(pa.string())), ("frame_index", pa.int64()), ("status", pa.string()),
        ("reason", pa.string()), ("mask_uri", pa.string()), ("scores", pa.string())]))  # fmt: skip
    pq.write_table(table, labels / schema.MANIFEST_NAME)


def a(rows):
    return np.array(rows, U8)


def make_tiny(tmp_path):
    """3 classes; images a (labelled), b (labelled, one unsure pixel), c (failed), d (no row);
    video vid: frame 0 labelled, 1 filtered, 2 failed."""
    coll, labels = tmp_path / "coll", tmp_path / "labels"
    coll.mkdir()
    (coll / "classes.json").write_text(json.dumps(["background", "cat", "dog"]))
    gts = {"a": a([[0, 0, 1, 1], [0, 0, 1, 1]]), "b": a([[2, 2, 0, 0], [2, 2, 0, 255]]),
           "c": a([[1, 1, 0, 0], [1, 1, 0, 0]]), "d": a([[0, 0, 0, 0], [0, 0, 2, 2]])}  # fmt: skip
    for name, gt in gts.items():
        _png(coll / "gt" / f"{name}.png", gt)
    frames = [a([[0, 1, 1, 0], [0, 1, 1, 255]]), np.zeros((2, 4), U8), a([[1, 1, 0, 0], [0] * 4])]
    for i, gt in enumerate(frames):
        _png(coll / "gt" / "vid" / f"{i:06d}.png", gt)
    _png(labels / "masks" / "a.png", a([[0, 0, 1, 1], [0, 0, 0, 1]]))
    _png(labels / "masks" / "b.png", a([[2, 255, 0, 0], [2, 2, 0, 0]]))
    _png(labels / "masks" / "vid" / "000000.png", a([[0, 1, 1, 1], [0, 1, 255, 1]]))
    rows = [_row("a", "image", "labelled"), _row("b", "image", "labelled"),
            _row("c", "image", "failed", reason="corrupt"), _row("vid", "video", "labelled", 0),
            _row("vid", "video", "filtered", 1, "irrelevant"),
            _row("vid", "video", "failed", 2, "decode error")]  # fmt: skip
    _write_manifest(labels, rows)
    return coll, labels


def test_evaluate_labels_hand_computed(tmp_path):
    coll, labels = make_tiny(tmp_path)
    result = evaluate_labels(str(labels), str(coll))
    # images, 255 -> background: IoU bg 17/25, cat 3/8, dog 3/6
    assert result["per_class_iou"] == {"background": 68.0, "cat": 37.5, "dog": 50.0}
    assert result["image_miou"] == 51.8
    assert result["image_miou_confident"] == 56.1  # bg 17/24, cat 3/8, dog 3/5
    assert result["coverage"] == 45.2  # 14 of 31 scored pixels; failed and missing uncovered
    assert result["frame_miou"] == 61.4  # bg 16/20, cat 3/7
    assert result["frame_coverage"] == 60.9  # 14 of 23
    video = result["videos"]["vid"]
    assert video == {"j": 53.3, "j_relevant": 30.0, "frames": 3, "relevant_frames": 2,
                     "missing": 1, "labelled": 1, "filtered": 1, "failed": 1}  # fmt: skip
    assert result["mean_video_j"] == 53.3
    assert result["status_counts"] == {"labelled": 3, "filtered": 1, "failed": 2}
    assert (result["images_scored"], result["frames_scored"], result["missing"]) == (4, 3, 3)
    json.dumps(result)  # JSON-able
    table = format_table(result)
    assert "image mIoU 51.8" in table and "vid" in table and "dog" in table


def test_perfect_labels_score_100_and_whole_video_failure_is_missing(tmp_path):
    coll, labels = make_tiny(tmp_path)
    rows = []
    for name in "abcd":
        _png(labels / "masks" / f"{name}.png", cv2.imread(str(coll / "gt" / f"{name}.png"), 0))
        rows.append(_row(name, "image", "labelled"))
    rows.append(_row("vid", "video", "failed", None, "unreadable"))
    _write_manifest(labels, rows)
    result = evaluate_labels(str(labels), str(coll))
    assert result["image_miou"] == 100.0 and result["image_miou_confident"] == 100.0
    assert result["videos"]["vid"]["j"] == 33.3  # only the empty frame matches
    assert result["videos"]["vid"]["missing"] == 3 and result["missing"] == 3


def test_size_mismatch_names_the_item(tmp_path):
    coll, labels = make_tiny(tmp_path)
    _png(labels / "masks" / "vid" / "000000.png", np.zeros((3, 4), U8))
    with pytest.raises(ValueError, match=r"^vid frame 0: mask size \(4, 3\) != gt size \(4, 2\)"):
        evaluate_labels(str(labels), str(coll))


def test_out_of_range_class_names_the_item(tmp_path):
    coll, labels = make_tiny(tmp_path)
    _png(labels / "masks" / "a.png", np.full((2, 4), 9, U8))
    with pytest.raises(ValueError, match=r"^a: pred value 9"):
        evaluate_labels(str(labels), str(coll))


def test_same_scores_through_s3(tmp_path, monkeypatch):
    s3fs = pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("bucket")
        coll, labels = make_tiny(tmp_path)
        fs.put(str(coll), "bucket/coll", recursive=True)
        fs.put(str(labels), "bucket/labels", recursive=True)
        remote = evaluate_labels("s3://bucket/labels", "s3://bucket/coll")
        assert remote == evaluate_labels(str(labels), str(coll))
        assert remote["images_scored"] == 4 and remote["frames_scored"] == 3
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
