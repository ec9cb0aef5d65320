"""evaluate_labels' result: the JSON-able summary of its tallies (percent) and terminal tables of it."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from pipeline import schema
from pipeline.evaluate.metrics import Tally


def _pct(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(100.0 * value, 1)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarise(classes, rows, images: Tally, frames: Tally, videos, missing: int) -> dict:
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
        f"image mIoU {_fmt(result['image_miou'])}%  confident-only "
        f"{_fmt(result['image_miou_confident'])}%  coverage {_fmt(result['coverage'])}%",
        f"frame mIoU {_fmt(result['frame_miou'])}%  mean video J {_fmt(result['mean_video_j'])}%  "
        f"(frames with foreground {_fmt(result['mean_video_j_relevant'])}%)",
    ]
    breakdown = format_breakdown(result)
    return "\n".join(lines) + (f"\n\n{breakdown}" if breakdown else "")


def format_breakdown(result: dict) -> str:
    """The per-class IoU and per-video J tables of evaluate_labels' result (percent)."""
    lines: list[str] = []
    if result["per_class_iou"]:
        lines += [f"{'class':<14}{'IoU %':>7}"]
        lines += [f"{name:<14}{_fmt(v):>7}" for name, v in result["per_class_iou"].items()]
    if result["videos"]:
        head = ("video", "J %", "J fg %", "frames", "labelled", "filtered", "failed", "missing")
        lines += [*([""] if lines else []), f"{head[0]:<24}" + "".join(f"{h:>9}" for h in head[1:])]
        for vid, v in result["videos"].items():
            cells = (_fmt(v["j"]), _fmt(v["j_relevant"]), v["frames"], v["labelled"],
                     v["filtered"], v["failed"], v["missing"])  # fmt: skip
            lines.append(f"{vid[:23]:<24}" + "".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)
