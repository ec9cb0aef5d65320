"""Foreground J of the video graph path (split_shots + relevant_frames + segment_video) on the
dev videos.

    .venv/bin/python benchmarks/video_quality.py [--collection ../shared/data/dev]
        [--cams /tmp/clf/run_lr3/model.pt] [--cache /tmp/webseg_video_cams]

Without --cams: cams=None and every frame kept (motion + colour only). With --cams MODEL: CAMs,
per-frame tag scores and the backbone's stride-8 features from that classifier (cached under
--cache), frames kept by relevant_frames on the scores, and the CAMs and features passed to
segment_video (--no-features: colour alone as the appearance term). Reads gt/ and gt_meta.json (measurement only).
J per frame: IoU of (gt > 0 & gt != 255) vs (mask > 0 & mask != 255) over pixels where gt != 255;
an empty-vs-empty frame counts 1; a filtered frame predicts nothing. Columns: J over all frames,
J over the frames after the annotated intro (the relevant ones), intro frames filtered, relevant
frames kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np
from image_quality import parse_overrides

from pipeline.collection import load_label_space
from pipeline.video.relevance import RelevanceConfig, relevant_frames
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


def frame_j(mask: np.ndarray | None, gt: np.ndarray) -> float:
    valid = gt != 255
    truth = (gt > 0) & valid
    pred = np.zeros_like(truth) if mask is None else (mask > 0) & (mask != 255) & valid
    union = (truth | pred).sum()
    return 1.0 if union == 0 else float((truth & pred).sum() / union)


def cached_cams(model_uri: str, cache: Path, item_id: str, frames, tag_ids, prior: bool = True):
    """T x (K x h x w) CAMs, (T, K) scores of the item's tags and T x (C x h8 x w8) backbone
    features, computed once per model (with or without the ImageNet prior,
    CamConfig.imagenet_prior)."""
    from pipeline.cam_config import CamConfig

    # as the CAM stage runs video frames (no LayerCAM); in the key: a changed default must not
    # reuse old maps
    cfg = CamConfig(imagenet_prior=prior, layer_cam=False)
    stamp = f"{Path(model_uri).resolve()}:{os.path.getmtime(model_uri)}:{prior}:{cfg}:features"
    key = hashlib.sha1(stamp.encode())
    path = cache / key.hexdigest()[:12] / f"{item_id}.npz"
    if not path.exists():
        from pipeline.cam import compute_cams
        from pipeline.checkpoint import load_classifier
        from pipeline.models.imagenet_prior import load_prior

        model, model_cfg, classes = load_classifier(model_uri)
        head = load_prior(model.backbone, model_cfg.backbone, list(classes)) if prior else None
        features: list = []
        cams, scores = compute_cams(
            model, frames, [tag_ids] * len(frames), cfg, prior=head, appearance=features
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, cams=np.stack(cams), scores=np.stack(scores), features=np.stack(features)
        )
    data = np.load(path)
    return list(data["cams"]), data["scores"], list(data["features"])


def measure(root: Path, item: dict, classes: list[str], intro: int, args) -> dict:
    frames = decode(root / item["uri"])
    tag_ids = [classes.index(t) for t in item["tags"]]
    cams, features, keep = None, None, np.ones(len(frames), bool)
    start = time.perf_counter()
    shots = split_shots(frames, ShotConfig())
    if args.cams:
        cams, scores, features = cached_cams(
            args.cams, Path(args.cache), item["id"], frames, tag_ids, not args.no_prior
        )
        start = time.perf_counter()  # CAM time is the classifier's, not the graph path's
        keep, _ = relevant_frames(scores.max(axis=1), shots, RelevanceConfig())
        cams = cams if not args.no_cam_unary else None
    features = features if not args.no_features else None
    masks = segment_video(frames, cams, tag_ids, keep, shots, args.video_cfg, features)
    seconds = time.perf_counter() - start
    gts = [
        cv2.imread(str(root / "gt" / item["id"] / f"{t:06d}.png"), 0) for t in range(len(frames))
    ]
    js = [frame_j(m, g) for m, g in zip(masks, gts, strict=True)]
    labelled = [m for m in masks if m is not None]
    return {
        "id": item["id"], "frames": len(frames), "shots": int(shots.max()) + 1,
        "j_all": 100 * np.mean(js), "j_relevant": 100 * np.mean(js[intro:]),
        "intro_filtered": int((~keep[:intro]).sum()), "intro": intro,
        "relevant_kept": int(keep[intro:].sum()), "relevant": len(frames) - intro,
        "ignore": float(np.mean([(m == 255).mean() for m in labelled])) if labelled else 0.0,
        "ms_per_frame": 1000 * seconds / len(frames),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=DEFAULT_DIR)
    parser.add_argument("--cams", default=None, help="classifier checkpoint: CAMs + relevance")
    parser.add_argument("--cache", default="/tmp/webseg_video_cams", help="CAM cache folder")
    parser.add_argument("--no-cam-unary", action="store_true", help="CAMs for relevance only")
    parser.add_argument("--no-prior", action="store_true", help="CAMs without the ImageNet prior")
    parser.add_argument(
        "--no-features", action="store_true", help="colour alone as the appearance term"
    )
    parser.add_argument("--only", default=None, help="comma-separated item ids")
    parser.add_argument(
        "--set", nargs="*", default=[], help="VideoSegConfig overrides: motion.flow_weight=0.5"
    )
    args = parser.parse_args(argv)
    args.video_cfg = parse_overrides(args.set, VideoSegConfig())
    root = Path(args.collection)
    classes = list(load_label_space(str(root)))
    meta = json.loads((root / "gt_meta.json").read_text())
    items = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x.strip()]
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for item in (i for i in items if i.get("kind") == "video"):
        if only and item["id"] not in only:
            continue
        intro = meta.get(item["id"], {}).get("intro_frames", 0)
        rows.append(r := measure(root, item, classes, intro, args))
        print(f"{r['id']:<22} frames {r['frames']:3d} shots {r['shots']}  J all {r['j_all']:5.1f}"
              f"  J relevant {r['j_relevant']:5.1f}  intro filtered {r['intro_filtered']}/{intro}"
              f"  relevant kept {r['relevant_kept']}/{r['relevant']}"
              f"  ignore {100 * r['ignore']:.1f} %  {r['ms_per_frame']:.0f} ms/frame",
              flush=True)  # fmt: skip
    print(
          f"mean J: all frames {np.mean([r['j_all'] for r in rows]):.1f}; "
          f"relevant frames {np.mean([r['j_relevant'] for r in rows]):.1f}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
