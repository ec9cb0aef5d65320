"""Foreground J on clips where nothing moves but the camera: one real dev frame, cropped by a
window that pans across it, with sensor noise (a parked car, a group standing still). The cut
finds no moving object there; `video.per_frame_below` hands such frames to the per-frame labeller.

    .venv/bin/python benchmarks/parked_objects.py --cams /tmp/os32/clf.pt
        [--collection ../shared/data/dev] [--cache /tmp/webseg_parked_cams]

Each clip goes through `label_video_window` (relevance, the cut, the fallback) with the given
classifier's CAMs, scores and features, once with the default `per_frame_below` and once with 0
(the cut alone). Reads gt/ (measurement only); J as in video_quality.py.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from video_quality import DEFAULT_DIR, cached_cams, decode, frame_j

from pipeline.collection import read_collection
from pipeline.label_config import VideoConfig
from pipeline.labelling import label_video_window
from pipeline.refine.image_labeller import ImageLabelConfig

# (video, frame): the object's share of the frame 11 % (car), 5 % (car, far), 15 % (four girls),
# 4 % (bike and rider)
CLIPS = [("davis_car-shadow", 10), ("davis_car-shadow", 36), ("davis_schoolgirls", 20),
         ("segtrack_bmx", 15)]  # fmt: skip


def panned(
    frame: np.ndarray, gt: np.ndarray, n_frames: int = 24, step: int = 3, zoom: float = 0.85
):
    """One frame and its ground truth -> n_frames crops of zoom x the size sliding step px a frame
    to the right, resized back to full size, with Gaussian noise (sigma 2) on the frames."""
    height, width = gt.shape
    h, w = int(height * zoom), int(width * zoom)
    y = (height - h) // 2
    rng = np.random.default_rng(0)
    frames, gts = [], []
    for i in range(n_frames):
        x = min(width - w, i * step)
        crop = cv2.resize(frame[y : y + h, x : x + w], (width, height)).astype(np.float32)
        frames.append(np.clip(crop + rng.normal(0, 2, crop.shape), 0, 255).astype(np.uint8))
        gts.append(
            cv2.resize(gt[y : y + h, x : x + w], (width, height), interpolation=cv2.INTER_NEAREST)
        )
    return frames, gts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=DEFAULT_DIR)
    parser.add_argument("--cams", required=True, help="classifier checkpoint")
    parser.add_argument("--cache", default="/tmp/webseg_parked_cams", help="CAM cache folder")
    args = parser.parse_args(argv)
    root = Path(args.collection)
    items = {item.id: item for item in read_collection(str(root)).items}
    default = VideoConfig()
    rows = []
    for video, t0 in CLIPS:
        item = items[video]
        gt = cv2.imread(str(root / "gt" / video / f"{t0:06d}.png"), 0)
        frames, gts = panned(decode(Path(item.uri))[t0], gt)
        tag_ids = list(item.tag_ids)
        cams, scores, features = cached_cams(
            args.cams, Path(args.cache), f"{video}_{t0}_parked", frames, tag_ids
        )
        clip, cams, features = np.stack(frames), np.stack(cams), np.stack(features)
        js = []
        for cfg in (replace(default, per_frame_below=0.0), default):
            out = label_video_window(clip, cams, scores, tag_ids, cfg, ImageLabelConfig(), features)
            js.append(
                100 * np.mean([frame_j(row.mask, g) for row, g in zip(out, gts, strict=True)])
            )
        rows.append(js)
        share = 100 * np.mean([(g > 0).mean() for g in gts])
        print(f"{video:<20} frame {t0:2d}  object {share:4.1f} % of the frame  "
              f"J cut alone {js[0]:5.1f}  with per_frame_below {default.per_frame_below:g}: {js[1]:5.1f}",
              flush=True)  # fmt: skip
    print(
        f"mean J: cut alone {np.mean([r[0] for r in rows]):.1f}; "
        f"with the fallback {np.mean([r[1] for r in rows]):.1f}"
    )


if __name__ == "__main__":
    main()
