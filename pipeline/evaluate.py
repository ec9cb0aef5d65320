"""Score a pseudo-label set against a collection's ground truth: image mIoU and video J.

    python -m pipeline.evaluate LABELS COLLECTION [--json OUT.json]

Only this module (and the report built on it) may read a collection's gt/. Scoring walks gt/, so
an item the label set lacks cannot raise the score: it counts as all background and as missing.
"""

from __future__ import annotations

import argparse
import json
import math
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.schema import BACKGROUND, IGNORE

_STATUS_PRIORITY = {schema.LABELLED: 3, schema.FILTERED: 2, schema.FAILED: 1}


def pair_histogram(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Counts of (gt value, pred value) pairs: pred, gt same-shape arrays of values in 0..255
    (class indices, 255 = ignore) -> (256, 256) int64, rows = gt, columns = pred."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    for name, array in (("pred", pred), ("gt", gt)):
        if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name} values must lie in 0..255")
    pairs = gt.astype(np.uint16) << 8 | pred.astype(np.uint16)
    return np.bincount(pairs.ravel(), minlength=65536).reshape(256, 256)


def histogram_foreground_iou(hist: np.ndarray) -> float:
    """Foreground J in [0, 1] from a pair_histogram: foreground = values 1..254, gt 255 excluded,
    predicted 255 counts as background; empty gt and empty prediction score 1.0."""
    union = hist[1:IGNORE].sum() + hist[BACKGROUND, 1:IGNORE].sum()
    return 1.0 if union == 0 else float(hist[1:IGNORE, 1:IGNORE].sum() / union)


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground J of one frame: pred, gt HxW uint8 class indices, 255 = ignore (see above)."""
    return histogram_foreground_iou(pair_histogram(pred, gt))


class ConfusionMatrix:
    """Pixel confusion matrix, rows = ground truth, columns = prediction (int64, CxC)."""

    def __init__(self, num_classes: int):
        if not 0 < num_classes <= IGNORE:
            raise ValueError(f"num_classes must be 1..{IGNORE}: {IGNORE} means ignore")
        self.num_classes = num_classes
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: same-shape integer arrays of class indices; gt == 255 (ignore) is skipped.

        pred must lie in [0, C) wherever gt is scored: map or mask predicted 255 before calling.
        """
        self.add_histogram(pair_histogram(pred, gt))

    def add_histogram(self, hist: np.ndarray) -> None:
        """Adds a (256, 256) pair_histogram; its row 255 (gt ignore) is skipped."""
        n = self.num_classes
        bad_gt = np.flatnonzero(hist[n:IGNORE].sum(1))
        if bad_gt.size:
            raise ValueError(f"gt value {n + bad_gt[0]} outside 0..{n - 1} and not {IGNORE}")
        bad_pred = np.flatnonzero(hist[:n, n:].sum(0))
        if bad_pred.size:
            raise ValueError(f"pred value {n + bad_pred[0]} outside 0..{n - 1} on scored pixels")
        self.mat += hist[:n, :n]

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1], float64 (C,); NaN for classes absent from both gt and pred."""
        tp = np.diag(self.mat).astype(np.float64)
        union = self.mat.sum(0) + self.mat.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU in [0, 1] over classes present in gt or pred (NaN when nothing was scored)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    def pixel_accuracy(self) -> float:
        total = self.mat.sum()
        return float(np.trace(self.mat) / total) if total else math.nan


@dataclass
class _Tally:
    """Running totals of one group of scored items (all images, or all video frames)."""

    cm: ConfusionMatrix
    cm_confident: ConfusionMatrix
    items: int = 0
    scored_px: int = 0
    covered_px: int = 0

    def add(self, hist: np.ndarray, covered: bool) -> None:
        """hist: pair_histogram of one item; covered: False for failed/missing items."""
        confident = hist.copy()
        confident[:, IGNORE] = 0
        self.cm_confident.add_histogram(confident)
        confident[:, BACKGROUND] += hist[:, IGNORE]  # predicted 255 counted as background
        self.cm.add_histogram(confident)
        self.items += 1
        self.scored_px += int(hist[:IGNORE].sum())
        if covered:
            self.covered_px += int(hist[:IGNORE, :IGNORE].sum())

    def coverage(self) -> float:
        return self.covered_px / self.scored_px if self.scored_px else math.nan


@dataclass
class _Video:
    frame_j: list[float] = field(default_factory=list)
    relevant_j: list[float] = field(default_factory=list)
    missing: int = 0


def _pct(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(100.0 * value, 1)


def read_manifest(labels_uri: str) -> list[dict]:
    """Rows of LABELS/manifest.parquet as dicts (data contract columns)."""
    data = storage.read_bytes(storage.join(labels_uri, schema.MANIFEST_NAME))
    return pq.read_table(pa.BufferReader(data)).to_pylist()


def read_classes(collection_uri: str) -> list[str]:
    """The collection's label space (classes.json), VOC-21 when absent."""
    uri = storage.join(collection_uri, "classes.json")
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else list(schema.VOC_CLASSES)


def read_mask(uri: str) -> np.ndarray:
    """A single-channel 8-bit PNG as HxW uint8."""
    mask = cv2.imdecode(np.frombuffer(storage.read_bytes(uri), np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{uri}: not a single-channel 8-bit PNG")
    return mask


def list_gt(collection_uri: str) -> list[tuple[str, int | None, str]]:
    """(id, frame_index or None, uri) of every gt mask: gt/<id>.png, gt/<id>/<frame:06d>.png."""
    gt_uri = storage.join(collection_uri, "gt")
    fs, root = storage.filesystem(gt_uri)
    try:
        names = storage.with_retries(lambda: fs.find(root), f"list {gt_uri}")
    except FileNotFoundError:
        return []
    out = []
    for name in sorted(names):
        rel = posixpath.relpath(name.replace("\\", "/"), root.replace("\\", "/"))
        if not rel.endswith(".png") or posixpath.basename(rel).startswith("."):
            continue
        folder, stem = posixpath.split(rel[: -len(".png")])
        if folder and stem.isdigit():
            out.append((folder, int(stem), storage.join(gt_uri, rel)))
        else:
            out.append((rel[: -len(".png")], None, storage.join(gt_uri, rel)))
    return out


def index_rows(rows: Iterable[dict]) -> dict[tuple[str, int | None], dict]:
    """Rows keyed by (id, frame_index); on duplicates the most useful status wins."""
    index: dict[tuple[str, int | None], dict] = {}
    for row in rows:
        frame = row.get(schema.FRAME_INDEX)
        key = (row[schema.ID], None if frame is None else int(frame))
        if row[schema.STATUS] not in _STATUS_PRIORITY:
            raise ValueError(f"{key[0]}: unknown status {row[schema.STATUS]!r}")
        rank = _STATUS_PRIORITY[row[schema.STATUS]]
        if key not in index or rank > _STATUS_PRIORITY[index[key][schema.STATUS]]:
            index[key] = row
    return index


def _item_name(item_id: str, frame: int | None) -> str:
    return item_id if frame is None else f"{item_id} frame {frame}"


def _load_pair(labels_uri: str, row: dict | None, gt_uri: str, item: str):
    """(pred, gt, covered) for one gt item; failed/missing/filtered rows become all background."""
    gt = read_mask(gt_uri)
    if row is None or row[schema.STATUS] != schema.LABELLED:
        covered = row is not None and row[schema.STATUS] == schema.FILTERED
        return np.full_like(gt, BACKGROUND), gt, covered
    if not row.get(schema.MASK_URI):
        raise ValueError(f"{item}: status labelled but no mask_uri")
    pred = read_mask(storage.resolve(labels_uri, row[schema.MASK_URI]))
    if pred.shape != gt.shape:
        raise ValueError(f"{item}: mask size {pred.shape[::-1]} != gt size {gt.shape[::-1]} (WxH)")
    return pred, gt, True


def evaluate_labels(labels_uri: str, collection_uri: str, workers: int = 8) -> dict:
    """Scores a label set against a collection's gt/ (see module docstring); JSON-able dict.

    Keys: image_miou (predicted 255 counted as background), image_miou_confident (predicted-255
    pixels excluded), coverage (share of scored image pixels with a confident label from a labelled
    or filtered row), per_class_iou {name: iou} over classes present, frame_miou, frame_coverage,
    videos {id: {j, j_relevant, frames, relevant_frames, missing, labelled, filtered, failed}},
    mean_video_j, mean_video_j_relevant, status_counts, images_scored, frames_scored, missing.
    IoUs in percent rounded to 0.1 (None where undefined). Failed or missing rows count as all
    background; filtered frames as all background. Raises ValueError naming the item when a mask's
    size differs from its gt.
    """
    classes = read_classes(collection_uri)
    rows = read_manifest(labels_uri)
    index = index_rows(rows)
    gt_items = list_gt(collection_uri)
    n = len(classes)
    images = _Tally(ConfusionMatrix(n), ConfusionMatrix(n))
    frames = _Tally(ConfusionMatrix(n), ConfusionMatrix(n))
    videos: dict[str, _Video] = defaultdict(_Video)
    missing = 0

    def load(item):
        item_id, frame, gt_uri = item
        name = _item_name(item_id, frame)
        # a frame without its own row takes its video's whole-item row (a video that failed whole)
        row = index.get((item_id, frame)) or index.get((item_id, None))
        pred, gt, covered = _load_pair(labels_uri, row, gt_uri, name)
        return item, row, pair_histogram(pred, gt), covered

    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding PNGs releases the GIL
        chunks = (gt_items[i : i + 64] for i in range(0, len(gt_items), 64))  # bounds memory
        for (item_id, frame, _), row, hist, covered in chain.from_iterable(
            pool.map(load, chunk) for chunk in chunks
        ):
            lost = row is None or row[schema.STATUS] == schema.FAILED
            missing += lost
            try:
                (images if frame is None else frames).add(hist, covered)
            except ValueError as error:
                raise ValueError(f"{_item_name(item_id, frame)}: {error}") from error
            if frame is not None:
                video, j = videos[item_id], histogram_foreground_iou(hist)
                video.frame_j.append(j)
                video.missing += lost
                if hist[1:IGNORE].sum():  # gt has foreground
                    video.relevant_j.append(j)
    return _summarise(classes, rows, images, frames, videos, missing)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _summarise(classes, rows, images: _Tally, frames: _Tally, videos, missing: int) -> dict:
    iou = images.cm.iou()
    by_id = Counter((r[schema.ID], r[schema.STATUS]) for r in rows)
    video_out = {
        vid: {
            "j": _pct(_mean(v.frame_j)),
            "j_relevant": _pct(_mean(v.relevant_j)),
            "frames": len(v.frame_j),
            "relevant_frames": len(v.relevant_j),
            "missing": v.missing,
            **{s: by_id[(vid, s)] for s in schema.STATUSES},
        }
        for vid, v in sorted(videos.items())
    }
    statuses, vids = [r[schema.STATUS] for r in rows], list(videos.values())
    return {
        "image_miou": _pct(images.cm.miou()),
        "image_miou_confident": _pct(images.cm_confident.miou()),
        "coverage": _pct(images.coverage()),
        "per_class_iou": {c: _pct(v) for c, v in zip(classes, iou, strict=True) if v == v},
        "frame_miou": _pct(frames.cm.miou()),
        "frame_coverage": _pct(frames.coverage()),
        "videos": video_out,
        "mean_video_j": _pct(_mean([_mean(v.frame_j) for v in vids])),
        "mean_video_j_relevant": _pct(_mean([_mean(v.relevant_j) for v in vids if v.relevant_j])),
        "status_counts": {s: statuses.count(s) for s in schema.STATUSES},
        "images_scored": images.items,
        "frames_scored": frames.items,
        "missing": missing,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(result: dict) -> str:
    """A readable text summary of evaluate_labels' result for the terminal."""
    counts = result["status_counts"]
    lines = [
        f"images scored {result['images_scored']}, frames scored {result['frames_scored']}, "
        f"missing {result['missing']}; rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"image mIoU {_fmt(result['image_miou'])}  confident-only "
        f"{_fmt(result['image_miou_confident'])}  coverage {_fmt(result['coverage'])}%",
        f"frame mIoU {_fmt(result['frame_miou'])}  mean video J {_fmt(result['mean_video_j'])}  "
        f"(frames with foreground {_fmt(result['mean_video_j_relevant'])})",
    ]
    if result["per_class_iou"]:
        lines += ["", f"{'class':<14}{'IoU':>7}"]
        lines += [f"{name:<14}{_fmt(v):>7}" for name, v in result["per_class_iou"].items()]
    if result["videos"]:
        head = ("video", "J", "J fg", "frames", "labelled", "filtered", "failed", "missing")
        lines += ["", f"{head[0]:<24}" + "".join(f"{h:>9}" for h in head[1:])]
        for vid, v in result["videos"].items():
            cells = (_fmt(v["j"]), _fmt(v["j_relevant"]), v["frames"], v["labelled"],
                     v["filtered"], v["failed"], v["missing"])  # fmt: skip
            lines.append(f"{vid[:23]:<24}" + "".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", help="label set folder or s3:// prefix")
    parser.add_argument("collection", help="collection holding gt/ (and classes.json)")
    parser.add_argument("--json", help="also write the result here as JSON")
    args = parser.parse_args(argv)
    result = evaluate_labels(args.labels, args.collection)
    print(format_table(result))
    if args.json:
        storage.write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
