"""Tests of pipeline.report: pure image helpers, and the HTML page on a tiny label set on disk."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.report.build import build_report, pick_spread
from pipeline.report.images import overlay_mask, voc_palette
from pipeline.report.page import ReportConfig

U8 = np.uint8
H, W = 48, 64


def test_voc_palette_known_colours():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == U8
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]  # ignore


def test_overlay_mask_tints_only_labelled_pixels():
    image = np.full((2, 2, 3), 100, U8)
    out = overlay_mask(image, np.array([[0, 1], [255, 0]], U8), alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100] and out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [114, 50, 50]  # half grey, half (128, 0, 0)


def test_pick_spread_keeps_ends_and_count():
    rows = [{"i": i} for i in range(10)]
    picked = pick_spread(rows, 4)
    assert [r["i"] for r in picked] == [0, 3, 6, 9]
    assert pick_spread(rows, 20) == rows


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _row(item_id, kind, status, frame=None, reason=None, mask=None):
    uri = f"media/{item_id}.png" if kind == "image" else f"media/{item_id}.avi"
    return {"id": item_id, "uri": uri, "kind": kind, "tags": ["cat"], "frame_index": frame,
            "status": status, "reason": reason, "mask_uri": mask,
            "scores": json.dumps({"cat": 0.8})}  # fmt: skip


def make_label_set(tmp_path):
    """Image a (labelled, with CAM), image b (failed), video v: frame 0 labelled, 1 filtered,
    2 failed. Class 1 = cat is a centred square in every gt."""
    coll, labels = tmp_path / "coll", tmp_path / "labels"
    rng = np.random.default_rng(0)
    gt = np.zeros((H, W), U8)
    gt[12:36, 16:48] = 1
    _write(coll / "media" / "a.png", rng.integers(0, 255, (H, W, 3), dtype=U8))
    _write(coll / "gt" / "a.png", gt)
    writer = cv2.VideoWriter(
        str(coll / "media" / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (W, H)
    )
    for i in range(3):
        writer.write(np.full((H, W, 3), 60 * i, U8))
        _write(coll / "gt" / "v" / f"{i:06d}.png", gt)
    writer.release()
    pred = np.zeros((H, W), U8)
    pred[12:36, 16:32] = 1  # half the square: IoU 50 for cat
    _write(labels / "masks" / "a.png", pred)
    _write(labels / "masks" / "v" / "000000.png", pred)
    _write(labels / "cams" / "a.png", rng.integers(0, 255, (H, W), dtype=U8))
    rows = [_row("a", "image", "labelled", mask="masks/a.png"),
            _row("b", "image", "failed", reason="corrupt <file> & more"),
            _row("v", "video", "labelled", 0, mask="masks/v/000000.png"),
            _row("v", "video", "filtered", 1, reason="frame score 0.02 below 0.3"),
            _row("v", "video", "failed", 2, reason="decode error")]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), str(labels / schema.MANIFEST_NAME))
    (labels / schema.RUN_NAME).write_text(json.dumps({"counts": {"labelled": 2}}))
    return coll, labels


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.imgs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        elif tag not in ("br", "meta"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        self.text.append(data)


def test_build_report_writes_a_self_contained_page(tmp_path):
    coll, labels = make_label_set(tmp_path)
    uri = build_report(str(labels), str(coll))
    assert uri == str(labels / "report.html")
    page = (labels / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert parser.open == []  # every tag closed
    text = " ".join(parser.text)
    # grid: a = image, CAM, overlay, mask, gt; v#0 = same without a CAM; + 1 filtered thumbnail
    assert len(parser.imgs) == 10
    assert all(src.startswith("data:image/jpeg;base64,") for src in parser.imgs)
    jpeg = base64.b64decode(parser.imgs[0].split(",", 1)[1])
    thumb = cv2.imdecode(np.frombuffer(jpeg, U8), cv2.IMREAD_COLOR)
    assert thumb.shape == (H, W, 3)  # smaller than thumb_px: kept at source size
    assert "Per-class IoU" in page and "<table" in page and "CAM" in page
    # item a: background IoU 2304/2688, cat 384/768 -> 67.9; frame v#0: foreground J 50.0
    assert "mIoU 67.9" in text and "J 50.0" in text and "85.7" in text
    assert "corrupt <file> & more" in text and "<file>" not in page  # escaped
    assert "frame score 0.02 below 0.3" in text and "decode error" in text
    assert "Failed items (2)" in text and "Filtered video frames (1)" in text


def test_report_without_collection_shows_masks_only(tmp_path):
    _, labels = make_label_set(tmp_path)
    out = tmp_path / "elsewhere" / "r.html"
    assert build_report(str(labels), None, str(out), max_items=1, cfg=ReportConfig()) == str(out)
    page = out.read_text()
    assert "Scores against ground truth" not in page and "Labelled items (1 of 2)" in page
    parser = _Tags()
    parser.feed(page)
    assert len(parser.imgs) == 2  # bare CAM heatmap and mask; no source (relative URI), no gt


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    coll, labels = make_label_set(tmp_path)
    page = build_report(str(labels), str(coll))
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}",
             "--window-size=1000,800", f"file://{page}"]  # fmt: skip
    subprocess.run(["chromium", *flags], check=True, capture_output=True, timeout=60)
    image = cv2.imread(str(shot))
    assert image.shape == (800, 1000, 3)
    assert image.std() > 10  # text and thumbnails, not a blank page


def test_scores_read_as_tag_and_two_decimals():
    from pipeline.report.page import scores_text

    assert scores_text(json.dumps({"person": 0.3991, "train": 0.0222})) == "person 0.40, train 0.02"
    assert scores_text(None) == "-" and scores_text("{}") == "-"
    assert scores_text("not json") == "not json"
    assert scores_text('{"car": null}') == "car None"
