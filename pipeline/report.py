"""A single self-contained HTML page for eyeballing a pseudo-label set.

    python -m pipeline.report LABELS [--collection COLLECTION] [--out report.html] [--max-items 48]

Shows status counts, scores (when the collection has gt/), a grid image | CAM | mask overlay |
mask | ground truth for a spread of labelled items, filtered video frames with scores and reasons,
and failed items with reasons. Thumbnails are inline base64 JPEGs, so the page travels alone.
"""

from __future__ import annotations

import argparse
import base64
import html
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline import schema, storage
from pipeline.evaluate import (
    ConfusionMatrix,
    evaluate_labels,
    foreground_iou,
    read_classes,
    read_manifest,
    read_mask,
)
from pipeline.schema import BACKGROUND, IGNORE

CAMS_DIR = "cams"
REPORT_NAME = "report.html"
CSS = """body{font:14px sans-serif;margin:20px;color:#222}h2{margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
.bar{background:#4a90d9;height:10px}.grid td{vertical-align:top}
.grid img{display:block}.cap{font-size:12px;width:150px;overflow-wrap:anywhere}
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
    thumb_px: int = 220  # longest side of a grid thumbnail (5 columns fit a 1400 px window)
    small_px: int = 160  # longest side of a filtered-frame thumbnail
    jpeg_quality: int = 85  # thumbnails' JPEG quality
    alpha: float = 0.55  # weight of the mask or CAM colour over the image
    max_rows: int = 500  # cap on listed filtered/failed rows (text stays readable)


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: (256, 3) uint8 RGB; 0 = black, 255 (ignore) = (224, 224, 192)."""
    palette, index = np.zeros((256, 3), np.uint8), np.arange(256)
    for bit in range(8):  # bit b of R, G, B = bits 3b, 3b+1, 3b+2 of the index, high bit first
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * bit + channel) & 1) << (7 - bit)).astype(
                np.uint8
            )
    return palette


PALETTE = voc_palette()


def colorize(mask: np.ndarray) -> np.ndarray:
    """HxW uint8 class indices (255 = ignore) -> HxWx3 uint8 RGB in the VOC palette."""
    return PALETTE[mask]


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """image HxWx3 uint8 RGB, mask HxW uint8 -> RGB; background left as is, others tinted."""
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    blend = (1 - alpha) * image + alpha * colorize(mask)
    return np.where((mask == BACKGROUND)[..., None], image, blend).astype(np.uint8)


def heatmap(cam: np.ndarray) -> np.ndarray:
    """cam HxW uint8 (0..255) -> HxWx3 uint8 RGB in the JET colour map."""
    return cv2.cvtColor(cv2.applyColorMap(cam, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_cam(image: np.ndarray | None, cam: np.ndarray, alpha: float) -> np.ndarray:
    """image HxWx3 uint8 RGB (or None: the bare heatmap), cam HxW uint8 -> RGB heatmap overlay."""
    if image is None:
        return heatmap(cam)
    cam = cv2.resize(cam, image.shape[1::-1]) if cam.shape != image.shape[:2] else cam
    return ((1 - alpha) * image + alpha * heatmap(cam)).astype(np.uint8)


def data_uri(rgb: np.ndarray, max_side: int, quality: int, nearest: bool = False) -> str:
    """HxWx3 uint8 RGB -> a base64 JPEG data URI, downscaled so its longest side is <= max_side."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def pick_spread(rows: list[dict], count: int) -> list[dict]:
    """Up to count rows evenly spaced over the list (keeps the image/frame/video mix)."""
    if len(rows) <= count:
        return list(rows)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]


def _esc(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def _table(head: list[str], body: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells in body are already HTML."""
    top = "".join(f"<th>{_esc(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f"<table class='{cls}'><tr>{top}</tr>{rows}</table>"


def _img(rgb: np.ndarray | None, side: int, cfg: ReportConfig, nearest: bool = False) -> str:
    return "-" if rgb is None else f"<img src='{data_uri(rgb, side, cfg.jpeg_quality, nearest)}'>"


def _swatch(index: int) -> str:
    return f"<span class='sw' style='background:rgb{tuple(int(v) for v in PALETTE[index])}'></span>"


def _row_name(row: dict) -> str:
    frame = row.get(schema.FRAME_INDEX)
    return row[schema.ID] if frame is None else f"{row[schema.ID]} #{frame}"


def _item_path(folder: str, row: dict) -> str:
    """folder/<id>.png for images, folder/<id>/<frame:06d>.png for video frames."""
    frame = row.get(schema.FRAME_INDEX)
    name = row[schema.ID] if frame is None else f"{row[schema.ID]}/{frame:06d}"
    return f"{folder}/{name}.png"


class _Sources:
    """Source images and video frames (HxWx3 uint8 RGB) of the rows to show; None if unreadable."""

    def __init__(self, collection_uri: str | None, rows: list[dict]):
        self.base, self.videos = collection_uri, {}
        self.wanted: dict[str, set[int]] = {}
        for row in rows:
            if row.get(schema.FRAME_INDEX) is not None:
                self.wanted.setdefault(row[schema.URI], set()).add(int(row[schema.FRAME_INDEX]))

    def get(self, row: dict) -> np.ndarray | None:
        uri = row[schema.URI]
        if row.get(schema.KIND) == schema.KIND_VIDEO and row.get(schema.FRAME_INDEX) is None:
            return None  # a whole-video row has no single frame to show
        if not (storage.is_remote(uri) or uri.startswith("/")):
            if self.base is None:
                return None
            uri = storage.resolve(self.base, uri)
        try:
            if row.get(schema.FRAME_INDEX) is None:
                bgr = cv2.imdecode(
                    np.frombuffer(storage.read_bytes(uri), np.uint8), cv2.IMREAD_COLOR
                )
                return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if uri not in self.videos:
                self.videos[uri] = _decode_frames(uri, self.wanted.get(row[schema.URI], set()))
            return self.videos[uri].get(int(row[schema.FRAME_INDEX]))
        except (OSError, ValueError):  # show what can be shown; failures are listed anyway
            return None


def _decode_frames(uri: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames of a video (0-based decode order) whose index is in wanted, as RGB."""
    out: dict[int, np.ndarray] = {}
    with storage.local_copy(uri) as path:
        capture = cv2.VideoCapture(path)
        for index in range(max(wanted, default=-1) + 1):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted:
                out[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        capture.release()
    return out


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


def _caption(row: dict, mask: np.ndarray, gt: np.ndarray | None) -> str:
    text = f"<b>{_esc(_row_name(row))}</b><br>tags: {_esc(', '.join(row[schema.TAGS] or []))}"
    text += f"<br>scores: {_esc(row.get(schema.SCORES))}"
    if gt is not None:
        text += f"<br>{_item_score(mask, gt, row.get(schema.FRAME_INDEX) is not None)}"
    return f"<div class='cap'>{text}</div>"


def _grid(labels_uri, collection_uri, rows, sources, has_gt, cfg: ReportConfig) -> str:
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
    return _table(head, body, "grid")


def _scores_html(result: dict, classes: list[str]) -> str:
    """Metric, per-class IoU and per-video J tables side by side; values in percent."""
    metrics = [[_esc(label), f"<b>{_esc(result[k])}</b>"] for k, label in METRICS.items()]
    parts = ["<div><h3>Summary (%)</h3>" + _table(["metric", "value"], metrics) + "</div>"]
    per_class = [
        [_swatch(classes.index(name)) + _esc(name), _esc(iou),
         f"<div class='bar' style='width:{2 * (iou or 0):.0f}px'></div>"]
        for name, iou in result["per_class_iou"].items()
    ]  # fmt: skip
    table = _table(["class", "IoU", ""], per_class)
    parts.append(f"<div><h3>Per-class IoU, images (%)</h3>{table}</div>")
    if result["videos"]:
        head = ["video", "J", "J fg frames", "frames", "labelled", "filtered", "failed", "missing"]
        keys = ["j", "j_relevant", *head[3:]]
        body = [[_esc(vid)] + [_esc(v[k]) for k in keys] for vid, v in result["videos"].items()]
        parts.append("<div><h3>Videos, foreground J (%)</h3>" + _table(head, body) + "</div>")
    return "<div class='row'>" + "".join(parts) + "</div>"


def _status_lists(filtered: list[dict], failed: list[dict], sources, cfg: ReportConfig) -> str:
    """Filtered frames as cards (thumbnail, scores, reason); failed items as a table."""
    cards = "".join(
        f"<div class='card'>{_img(sources.get(r), cfg.small_px, cfg)}<b>{_esc(_row_name(r))}</b>"
        f"<br>scores: {_esc(r.get(schema.SCORES))}<br>{_esc(r.get(schema.REASON))}</div>"
        for r in filtered[: cfg.max_rows]
    )
    out = f"<h2>Filtered video frames ({len(filtered)})</h2>"
    out += f"<div class='cards'>{cards}</div>" if cards else "<p>none</p>"
    body = [
        [_esc(_row_name(r)), _esc(r.get(schema.KIND)), _esc(r.get(schema.REASON))] for r in failed
    ]
    out += f"<h2>Failed items ({len(failed)})</h2>"
    return out + (
        _table(["item", "kind", "reason"], body[: cfg.max_rows]) if body else "<p>none</p>"
    )


def build_report(
    labels_uri: str,
    collection_uri: str | None,
    out_uri: str | None = None,
    max_items: int = 48,
    cfg: ReportConfig | None = None,
) -> str:
    """Writes the HTML report (default LABELS/report.html) and returns the URI written.

    collection_uri resolves relative media URIs and supplies gt/ and classes.json; with None the
    page shows masks, and sources only where the manifest's URIs are absolute.
    """
    cfg, rows = cfg or ReportConfig(), read_manifest(labels_uri)
    classes = read_classes(collection_uri) if collection_uri else list(schema.VOC_CLASSES)
    has_gt = bool(collection_uri) and storage.exists(storage.join(collection_uri, "gt"))
    by_status = {s: [r for r in rows if r[schema.STATUS] == s] for s in schema.STATUSES}
    picked = pick_spread(
        [r for r in by_status[schema.LABELLED] if r.get(schema.MASK_URI)], max_items
    )
    sources = _Sources(collection_uri, picked + by_status[schema.FILTERED][: cfg.max_rows])
    counts = [[_esc(s), str(len(r))] for s, r in by_status.items()]
    parts = [
        f"<h1>WebSeg label report</h1><p>labels: {_esc(labels_uri)}<br>"
        f"collection: {_esc(collection_uri)}</p><h2>Status</h2>{_table(['status', 'rows'], counts)}"
    ]
    if has_gt:
        result = evaluate_labels(labels_uri, collection_uri)
        parts.append("<h2>Scores against ground truth</h2>" + _scores_html(result, classes))
    legend = "".join(
        f"{_swatch(i)}{_esc(n)}" for i, n in [*enumerate(classes[:IGNORE]), (IGNORE, "ignore")]
    )
    parts.append(f"<h2>Labelled items ({len(picked)} of {len(by_status[schema.LABELLED])})</h2>")
    parts.append(
        f"<p>{legend}</p>" + _grid(labels_uri, collection_uri, picked, sources, has_gt, cfg)
    )
    parts.append(_status_lists(by_status[schema.FILTERED], by_status[schema.FAILED], sources, cfg))
    run_uri = storage.join(labels_uri, schema.RUN_NAME)
    if storage.exists(run_uri):
        run = _esc(storage.read_text(run_uri))
        parts.append(f"<h2>run.json</h2><details><summary>show</summary><pre>{run}</pre></details>")
    out_uri = out_uri or storage.join(labels_uri, REPORT_NAME)
    storage.write_text(out_uri, PAGE.format(css=CSS, body="".join(parts)))
    return out_uri


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("--collection", help="resolves media, supplies gt/ and classes.json")
    parser.add_argument("--out", help="default LABELS/report.html")
    parser.add_argument("--max-items", type=int, default=48)
    args = parser.parse_args(argv)
    uri = build_report(args.labels, args.collection, args.out, args.max_items)
    print(uri)
    return uri


if __name__ == "__main__":
    main()
