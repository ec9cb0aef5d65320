"""Foreground J of the video graph path (split_shots + segment_video) on the dev videos.

    .venv/bin/python benchmarks/video_quality.py [--collection ../shared/data/dev]

cams=None and keep=all True (motion + colour only). Reads gt/ and gt_meta.json (measurement only)
to also report J with the annotated intro frames dropped, as relevance would do. J per frame:
IoU of (gt > 0 & gt != 255) vs (mask > 0 & mask != 255) over pixels where gt != 255; an
empty-vs-empty frame counts 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.video.segment import VideoSegConfig, segment_video
from pipeline.video.shots import ShotConfig, split_shots

DEFAULT_DIR = os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev")


def decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def frame_j(mask: np.ndarray, gt: np.ndarray) -> float:
    valid = gt != 255
    truth = (gt > 0) & valid
    pred = (mask > 0) & (mask != 255) & valid
    union = (truth | pred).sum()
    return 1.0 if union == 0 else float((truth & pred).sum() / union)


def measure(root: Path, item: dict, classes: list[str], intro: int) -> dict:
    frames = decode(root / item["uri"])
    tag_ids = [classes.index(t) for t in item["tags"]]
    start = time.perf_counter()
    shots = split_shots(frames, ShotConfig())
    masks = segment_video(
        frames, None, tag_ids, np.ones(len(frames), bool), shots, VideoSegConfig()
    )
    seconds = time.perf_counter() - start
    gts = [
        cv2.imread(str(root / "gt" / item["id"] / f"{t:06d}.png"), 0) for t in range(len(frames))
    ]
    js = [frame_j(m, g) for m, g in zip(masks, gts, strict=True)]
    return {
        "id": item["id"], "frames": len(frames), "shots": int(shots.max()) + 1,
        "j_all": 100 * np.mean(js), "j_no_intro": 100 * np.mean(js[intro:]),
        "j_intro": 100 * np.mean(js[:intro]) if intro else None,
        "intro_fg": float(np.mean([(m == tag_ids[0]).mean() for m in masks[:intro]]))
        if intro else None,
        "ignore": float(np.mean([(m == 255).mean() for m in masks])),
        "ms_per_frame": 1000 * seconds / len(frames),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=DEFAULT_DIR)
    root = Path(parser.parse_args(argv).collection)
    classes = json.loads((root / "classes.json").read_text())
    meta = json.loads((root / "gt_meta.json").read_text())
    items = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = []
    for item in (i for i in items if i.get("kind") == "video"):
        rows.append(measure(root, item, classes, meta.get(item["id"], {}).get("intro_frames", 0)))
        r = rows[-1]
        extra = "" if r["j_intro"] is None else (
            f"  intro: J {r['j_intro']:.1f}, object share {100 * r['intro_fg']:.1f} %"
        )  # fmt: skip
        print(f"{r['id']:<22} frames {r['frames']:3d} shots {r['shots']}  J all {r['j_all']:5.1f}"
              f"  J intro dropped {r['j_no_intro']:5.1f}  ignore {100 * r['ignore']:.1f} %"
              f"  {r['ms_per_frame']:.0f} ms/frame{extra}", flush=True)  # fmt: skip
    print(
          f"mean J: all frames {np.mean([r['j_all'] for r in rows]):.1f}; "
          f"intro frames dropped {np.mean([r['j_no_intro'] for r in rows]):.1f}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
