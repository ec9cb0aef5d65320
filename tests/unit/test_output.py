import json
import os

import cv2
import numpy as np
import pytest

from pipeline import schema, storage
from pipeline.labelset import MANIFEST_SCHEMA
from pipeline.output import (
    LabelWriter,
    completed_groups,
    merge_rows,
    read_previous_rows,
    read_table,
    status_counts,
    to_manifest_table,
    write_manifest,
)
from pipeline.rows import dumps


def row(index, item_id, frame=None, status="labelled", group=None, reason=None, **extra):
    """One output manifest row as read back from a part (tags already a list)."""
    return {
        schema.ID: item_id, schema.URI: f"media/{item_id}", schema.KIND: "image" if frame is None
        else "video", schema.TAGS: ["dog"], schema.FRAME_INDEX: frame, schema.STATUS: status,
        schema.REASON: reason, schema.MASK_URI: None, schema.SCORES: "{}",
        schema.SOURCE_INDEX: index, schema.GROUP: group or f"{index}/{item_id}", **extra,
    }  # fmt: skip


def test_merge_keeps_the_latest_row_per_item_and_frame_in_input_order():
    first = row(1, "b", status="failed", reason="cannot decode image: x")
    retried = row(1, "b")
    rows = merge_rows([row(2, "c"), first, row(0, "a"), retried, row(0, "a")])
    assert [(r[schema.SOURCE_INDEX], r[schema.ID]) for r in rows] == [(0, "a"), (1, "b"), (2, "c")]
    assert rows[1] is retried


def test_merge_sorts_video_frames_and_drops_a_superseded_whole_video_failure():
    lost = row(3, "v", status="failed", reason="no output was produced", group="3/v")
    frames = [row(3, "v", frame=f, group=f"3/v#{f // 2:04d}") for f in (2, 0, 3, 1)]
    rows = merge_rows([lost, *frames])
    assert [r[schema.FRAME_INDEX] for r in rows] == [0, 1, 2, 3]
    assert all(r[schema.STATUS] == "labelled" for r in rows)


def test_merge_keeps_a_whole_video_failure_without_frames_and_same_ids_at_other_indices():
    failed = row(0, "v", status="failed", reason="cannot open video")
    duplicate = row(1, "v", status="failed", reason="duplicate id (first used by row 0)")
    assert merge_rows([duplicate, failed]) == [failed, duplicate]


def test_completed_groups_retry_failed_or_keep_them():
    rows = [row(0, "a"), row(1, "b", status="failed"), row(2, "v", frame=0, group="2/v#0000"),
            row(2, "v", frame=1, status="filtered", group="2/v#0000")]  # fmt: skip
    assert completed_groups(rows, retry_failed=True) == {"0/a", "2/v#0000"}
    assert completed_groups(rows, retry_failed=False) == {"0/a", "1/b", "2/v#0000"}
    assert completed_groups([], retry_failed=True) == frozenset()


def test_to_manifest_table_follows_the_contract():
    internal = {**row(0, "a", frame=schema.NO_FRAME), schema.TAGS: dumps(["dog", "cat"]),
                "seconds_refine": 0.5}  # fmt: skip
    video = {**row(1, "v", frame=4), schema.TAGS: dumps([])}
    table = to_manifest_table([internal, video])
    assert table.schema == MANIFEST_SCHEMA  # working columns such as timings are dropped
    assert table.column(schema.FRAME_INDEX).to_pylist() == [None, 4]
    assert table.column(schema.TAGS).to_pylist() == [["dog", "cat"], []]


def writer_row(item_id, kind, statuses, masks, indices, reasons=None):
    """A refined row as the write stage receives it."""
    return {
        schema.ID: item_id, schema.SOURCE_URI: f"media/{item_id}", schema.KIND: kind,
        schema.TAGS: dumps(["dog"]), schema.FRAME_INDICES: dumps(indices),
        schema.FRAME_STATUS: dumps(statuses),
        schema.FRAME_REASONS: dumps(reasons or [None] * len(statuses)),
        schema.TAG_SCORES: np.full((len(indices), 1), 0.9, np.float32), schema.MASKS: masks,
        schema.CAM: np.zeros((len(indices), 0, 1, 1), np.float32), schema.SOURCE_INDEX: 7,
        schema.GROUP: f"7/{item_id}",
    }  # fmt: skip


def test_writer_writes_masks_atomically_then_rows(tmp_path):
    mask = np.array([[0, 12], [255, 12]], np.uint8)
    writer = LabelWriter(str(tmp_path), save_cams=True)
    rows = writer.frame_rows(writer_row("sub/a b", "image", ["labelled"], mask[None], [-1]))
    assert rows[0][schema.MASK_URI] == "masks/sub/a b.png"
    written = cv2.imread(str(tmp_path / "masks" / "sub" / "a b.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8 and written.ndim == 2 and (written == mask).all()
    assert os.listdir(tmp_path / "masks" / "sub") == ["a b.png"]  # no temporary file left
    assert json.loads(rows[0][schema.SCORES]) == {"dog": 0.9}


def test_writer_rows_for_failed_and_filtered_frames_have_reasons_and_no_mask(tmp_path):
    writer = LabelWriter(str(tmp_path), save_cams=False)
    failed = writer.frame_rows(writer_row("x", "image", ["failed"], np.zeros((1, 1, 1), np.uint8),
                                          [-1], ["cannot decode image: truncated"]))  # fmt: skip
    video = writer.frame_rows(writer_row("v", "video", ["labelled", "filtered"],
                                         np.zeros((2, 3, 4), np.uint8), [0, 5],
                                         [None, "frame not relevant to its tags"]))  # fmt: skip
    assert failed[0][schema.STATUS] == "failed" and failed[0][schema.MASK_URI] is None
    assert failed[0][schema.REASON] == "cannot decode image: truncated"
    assert [r[schema.MASK_URI] for r in video] == ["masks/v/000000.png", None]
    assert video[1][schema.REASON] == "frame not relevant to its tags"
    assert not (tmp_path / "masks" / "x.png").exists()
    assert not (tmp_path / "masks" / "v" / "000005.png").exists()


def test_parts_and_manifest_are_read_back_and_merged(tmp_path):
    out = str(tmp_path)
    write_manifest(out, [row(0, "a", status="failed", reason="file not found")])
    writer = LabelWriter(out, save_cams=False)
    writer.write_part([{**row(0, "a"), schema.TAGS: dumps(["dog"])}])
    writer.write_part([{**row(1, "b"), schema.TAGS: dumps(["dog"])}])
    writer.write_part([])  # an empty batch writes no part
    assert len(os.listdir(tmp_path / schema.PARTS_DIR)) == 2
    merged = merge_rows(read_previous_rows(out))
    assert [(r[schema.ID], r[schema.STATUS]) for r in merged] == [
        ("a", "labelled"),
        ("b", "labelled"),
    ]


def test_a_part_left_half_written_by_a_killed_writer_is_not_trusted(tmp_path, monkeypatch):
    """SIGKILL between write and rename leaves the temp file behind; a rerun must ignore it."""
    out = str(tmp_path)
    LabelWriter(out, save_cams=False).write_part([{**row(0, "a"), schema.TAGS: dumps([])}])
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    monkeypatch.setattr(os, "unlink", lambda *a: None)  # the process died: nobody cleans up
    with pytest.raises(KeyboardInterrupt):
        LabelWriter(out, save_cams=False).write_part([{**row(1, "b"), schema.TAGS: dumps([])}])
    monkeypatch.undo()
    parts = tmp_path / schema.PARTS_DIR
    leftovers = [p for p in parts.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1
    leftovers[0].write_bytes(leftovers[0].read_bytes()[:100])  # half-written
    rows = read_previous_rows(out)
    assert [r[schema.ID] for r in rows] == ["a"]


def test_status_counts_group_failure_reasons():
    rows = [row(0, "a"), row(1, "b", status="failed", reason="cannot decode image: truncated"),
            row(2, "c", status="failed", reason="cannot decode image: broken"),
            row(3, "d", status="failed", reason="file not found"),
            row(4, "v", frame=0, status="filtered", reason="irrelevant")]  # fmt: skip
    counts = status_counts(rows)
    assert counts["rows"] == 5
    assert counts["status"] == {"labelled": 1, "failed": 3, "filtered": 1}
    assert counts["failed_reasons"] == {"cannot decode image": 2, "file not found": 1}


def test_manifest_write_is_atomic_and_typed(tmp_path):
    write_manifest(str(tmp_path), [row(0, "a")])
    write_manifest(str(tmp_path), [row(0, "a"), row(1, "b")])
    assert sorted(os.listdir(tmp_path)) == [schema.MANIFEST_NAME]
    table = storage.join(str(tmp_path), schema.MANIFEST_NAME)
    assert read_table(table).num_rows == 2 and read_table(table).schema == MANIFEST_SCHEMA


def test_label_confidence_is_confident_share_times_mean_tag_score():
    from pipeline.output import label_confidence

    mask = np.zeros((4, 5), np.uint8)
    mask[:2] = 255  # half ignored
    assert label_confidence(mask, [0.5, 1.0]) == pytest.approx(0.5 * 0.75)
    assert label_confidence(mask, []) == pytest.approx(0.5)  # a negative, or no classifier
    assert label_confidence(np.full((3, 3), 255, np.uint8), [0.9]) == 0.0
