"""HTML pieces of the label report: tables, the image grid, score tables and status lists, and
ReportConfig (thumbnail sizes, JPEG quality, overlay weight) they are drawn with."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

import numpy as np

from pipeline import schema, storage
from pipeline.evaluate.inputs import read_mask
from pipeline.evaluate.metrics import ConfusionMatrix, foreground_iou
from pipeline.report.images import PALETTE, colorize, data_uri, overlay_cam, overlay_mask
from pipeline.schema import BACKGROUND, IGNORE

CAMS_DIR = "cams"
CSS = """body{font:14px sans-serif;margin:20px;color:#222}h2{margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
.bar{background:#4a90d9;height:10px}.grid td{vertical-align:top}
.grid img{display:block;max-width:15vw;height:auto}.nw{white-space:nowrap}
.cap{font-size:12px;width:150px;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{width:170px;font-size:12px;border:1px solid #ccc;padding:4px}
.row{display:flex;gap:36px;align-items:flex-start}h3{margin:6px 0}
.sw{display:inline-block;width:12px;height:12px;margin:0 3px 0 10px;border:1px solid #999}"""

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>WebSeg label report</title>
<style>{css}</style></head><body>{body}</body></html>"""
METRICS = {
    "image_miou": "image mIoU (unsure = background)",
    "image_miou_confident": "image mIoU, confident pixels only",
    "coverage": "image coverage (% pixels labelled)",
    "frame_miou": "video-frame mIoU",
    "frame_coverage": "video-frame coverage",
    "mean_video_j": "mean video J",
    "mean_video_j_relevant": "mean video J, frames with foreground",
    "images_scored": "images scored",
    "frames_scored": "frames scored",
    "missing": "missing or failed (scored as background)",
}


@dataclass(frozen=True)
class ReportConfig:
    thumb_px: int = 220  # longest side of a grid thumbnail (shown at most 15 % of the window wide)
    small_px: int = 160  # longest side of a filtered-frame thumbnail
    jpeg_quality: int = 85  # thumbnails' JPEG quality
    alpha: float = 0.55  # weight of the mask or CAM colour over the image
    max_rows: int = 500  # cap on listed filtered/failed rows (text stays readable)


def escape_html(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def html_table(head: list[str], body: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells in body are already HTML."""
    top = "".join(f"<th>{escape_html(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f"<table class='{cls}'><tr>{top}</tr>{rows}</table>"


def _img(rgb: np.ndarray | None, side: int, cfg: ReportConfig, nearest: bool = False) -> str:
    return "-" if rgb is None else f"<img src='{data_uri(rgb, side, cfg.jpeg_quality, nearest)}'>"


def scores_text(raw: str | None) -> str:
    """A row's scores JSON ({tag: score}) as 'tag 0.40, other 0.02'; anything else as it is."""
    try:
        scores = json.loads(raw) if raw else None
    except ValueError:
        return str(raw)
    if not isinstance(scores, dict):
        return "-" if scores is None else str(raw)
    return ", ".join(f"{tag} {_number(v)}" for tag, v in scores.items()) or "-"


def _number(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)


def html_swatch(index: int) -> str:
    return f"<span class='sw' style='background:rgb{tuple(int(v) for v in PALETTE[index])}'></span>"


def _row_name(row: dict) -> str:
    frame = row.get(schema.FRAME_INDEX)
    return row[schema.ID] if frame is None else f"{row[schema.ID]} #{frame}"


def _item_path(folder: str, row: dict) -> str:
    """folder/<id>.png for images, folder/<id>/<frame:06d>.png for video frames."""
    return schema.mask_path(row[schema.ID], row.get(schema.FRAME_INDEX), folder)


def _read_optional(uri: str) -> np.ndarray | None:
    return read_mask(uri) if storage.exists(uri) else None


def _item_score(pred: np.ndarray, gt: np.ndarray, is_frame: bool) -> str:
    """Foreground J for a video frame, mIoU over present classes for an image (percent)."""
    if pred.shape != gt.shape:
        return "size differs from gt"
    if is_frame:
        return f"J {100 * foreground_iou(pred, gt):.1f}"
    cm = ConfusionMatrix(IGNORE)  # every valid class; absent ones do not enter the mean
    cm.add(np.where(pred == IGNORE, BACKGROUND, pred), gt)
    return f"mIoU {100 * cm.miou():.1f}"


def item_anchor(name: str) -> str:
    """The id of an item's row (report.html#item-photo_chelsea links to it)."""
    return "item-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _caption(row: dict, mask: np.ndarray, gt: np.ndarray | None) -> str:
    name = _row_name(row)
    tags = escape_html(", ".join(row[schema.TAGS] or []))
    text = f"<b id='{escape_html(item_anchor(name))}'>{escape_html(name)}</b><br>tags: {tags}"
    text += f"<br>scores: {escape_html(scores_text(row.get(schema.SCORES)))}"
    if gt is not None:
        text += f"<br>{_item_score(mask, gt, row.get(schema.FRAME_INDEX) is not None)}"
    return f"<div class='cap'>{text}</div>"


def html_grid(labels_uri, collection_uri, rows, sources, has_gt, cfg: ReportConfig) -> str:
    """The item | image | CAM | mask overlay | mask | gt table; CAM only when any exists."""
    cells = []
    for row in rows:
        mask = read_mask(storage.resolve(labels_uri, row[schema.MASK_URI]))
        cam = _read_optional(storage.join(labels_uri, _item_path(CAMS_DIR, row)))
        gt = _read_optional(storage.join(collection_uri, _item_path("gt", row))) if has_gt else None
        cells.append((row, sources.get(row), cam, mask, gt))
    show_cam = any(cam is not None for _, _, cam, _, _ in cells)
    head = ["item", "image", *["CAM"] * show_cam, "mask overlay", "mask", *["gt"] * has_gt]
    body, side, alpha = [], cfg.thumb_px, cfg.alpha
    for row, image, cam, mask, gt in cells:
        line = [_caption(row, mask, gt), _img(image, side, cfg)]
        if show_cam:
            heat = None if cam is None else overlay_cam(image, cam, alpha)
            line.append(_img(heat, side, cfg))
        line.append(_img(None if image is None else overlay_mask(image, mask, alpha), side, cfg))
        line.append(_img(colorize(mask), side, cfg, nearest=True))
        if has_gt:
            line.append(_img(None if gt is None else colorize(gt), side, cfg, nearest=True))
        body.append(line)
    return html_table(head, body, "grid")


def scores_html(result: dict, classes: list[str]) -> str:
    """Metric, per-class IoU and per-video J tables side by side; values in percent."""
    metrics = [
        [escape_html(label), f"<b>{escape_html(result[k])}</b>"] for k, label in METRICS.items()
    ]
    parts = ["<div><h3>Summary (%)</h3>" + html_table(["metric", "value"], metrics) + "</div>"]
    per_class = [
        [f"<span class='nw'>{html_swatch(classes.index(name))}{escape_html(name)}</span>",
         escape_html(iou),
         f"<div class='bar' style='width:{2 * (iou or 0):.0f}px'></div>"]
        for name, iou in result["per_class_iou"].items()
    ]  # fmt: skip
    table = html_table(["class", "IoU", ""], per_class)
    parts.append(f"<div><h3>Per-class IoU, images (%)</h3>{table}</div>")
    if result["videos"]:
        head = ["video", "J", "J fg frames", "frames", "labelled", "filtered", "failed", "missing"]
        keys = ["j", "j_relevant", *head[3:]]
        body = [
            [escape_html(vid)] + [escape_html(v[k]) for k in keys]
            for vid, v in result["videos"].items()
        ]
        parts.append("<div><h3>Videos, foreground J (%)</h3>" + html_table(head, body) + "</div>")
    return "<div class='row'>" + "".join(parts) + "</div>"


def status_lists_html(filtered: list[dict], failed: list[dict], sources, cfg: ReportConfig) -> str:
    """Filtered frames as cards (thumbnail, scores, reason); failed items as a table."""
    cards = "".join(
        f"<div class='card'>{_img(sources.get(r), cfg.small_px, cfg)}<b>{escape_html(_row_name(r))}</b>"
        f"<br>scores: {escape_html(scores_text(r.get(schema.SCORES)))}<br>{escape_html(r.get(schema.REASON))}</div>"
        for r in filtered[: cfg.max_rows]
    )
    out = f"<h2>Filtered video frames ({len(filtered)})</h2>"
    out += f"<div class='cards'>{cards}</div>" if cards else "<p>none</p>"
    body = [
        [
            escape_html(_row_name(r)),
            escape_html(r.get(schema.KIND)),
            escape_html(r.get(schema.REASON)),
        ]
        for r in failed
    ]
    out += f"<h2>Failed items ({len(failed)})</h2>"
    return out + (
        html_table(["item", "kind", "reason"], body[: cfg.max_rows]) if body else "<p>none</p>"
    )
