"""CAM throughput: one forward pass per row (the loop CamStage ran before) against rows batched
together with size buckets (``CamConfig.size_bucket``), side by side on the same images.

The images are taken in chunks of ``--rows`` (what one CAM-stage batch holds); each chunk runs
both ways in turn, so a busy machine slows both alike. Prints images/s of each, the ratio, and
how far the batched CAMs are from the per-row ones (mean |difference| after resizing to one size).

    .venv/bin/python benchmarks/cam_batching.py --model model/classifier.pt \
        --collection ../shared/data/dev --limit 64 [--save-cams /tmp/camcache/batched.npz]

``--save-cams`` keeps the batched CAMs of every image, for benchmarks/crf_fast_path.py
``--cams-npz`` (dev mIoU with them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from image_quality import load_items, read_rgb

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier


def per_row(model, images, tags, cfg: CamConfig) -> list[np.ndarray]:
    exact = replace(cfg, size_bucket=0)
    return [compute_cams(model, [im], [t], exact)[0][0] for im, t in zip(images, tags, strict=True)]


def cam_distance(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    h, w = a.shape[1:]
    resized = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in b])
    return float(np.abs(a - resized).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--model", required=True, help="classifier checkpoint")
    ap.add_argument("--rows", type=int, default=8, help="images per CAM-stage batch")
    ap.add_argument("--bucket", type=int, default=32, help="size_bucket of the batched way")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a CAM actor's CPUs)")
    ap.add_argument("--limit", type=int, default=64, help="first N image items (0 = all)")
    ap.add_argument("--save-cams", help="npz of the batched CAMs of every image")
    ap.add_argument("--json-out", help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.collection)
    items = [it for it in load_items(root) if it["tag_ids"]][: args.limit or None]
    model, _, _ = load_classifier(args.model)
    cfg = replace(CamConfig(), batch_size=args.rows, size_bucket=args.bucket)
    seconds = {"per_row": 0.0, "batched": 0.0}
    distances, saved = [], {}
    for start in range(0, len(items), args.rows):
        chunk = items[start : start + args.rows]
        images = [read_rgb(root, it) for it in chunk]
        tags = [it["tag_ids"] for it in chunk]
        began = time.perf_counter()
        single = per_row(model, images, tags, cfg)
        seconds["per_row"] += time.perf_counter() - began
        began = time.perf_counter()
        batched, _ = compute_cams(model, images, tags, cfg)
        seconds["batched"] += time.perf_counter() - began
        distances += [cam_distance(a, b) for a, b in zip(single, batched, strict=True)]
        saved.update({it["id"]: c for it, c in zip(chunk, batched, strict=True)})
    result = {
        "images": len(items),
        "rows_per_batch": args.rows,
        "torch_threads": args.threads,
        "size_bucket": args.bucket,
        "per_row_images_per_s": round(len(items) / seconds["per_row"], 3),
        "batched_images_per_s": round(len(items) / seconds["batched"], 3),
        "speedup": round(seconds["per_row"] / seconds["batched"], 2),
        "mean_abs_cam_difference": round(float(np.mean(distances)), 4),
    }
    print(json.dumps(result, indent=2))
    if args.save_cams:
        np.savez_compressed(args.save_cams, **saved)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
