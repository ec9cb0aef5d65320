"""The dense-CRF fast path, side by side with the full CRF: seconds per image and dev mIoU.

For every image of the collection, each candidate CRF setting runs on the same CAMs, in turn
(interleaved, so a busy machine slows every candidate alike), inside the real ``cam_crf`` route
(``pipeline.refine.image_labeller.label_image``). Timed: the ``dense_crf`` call alone (the cost
the fast path removes) and the whole ``label_image``. Scored as in benchmarks/image_quality.py,
for all images and both halves of the sorted ids (even / odd positions).

    .venv/bin/python benchmarks/crf_fast_path.py --collection ../shared/data/dev \
        --model model/classifier.pt            # or --cams-npz a cached {item id: CAMs} file

Prints a markdown table and writes the same figures as JSON (--json-out).
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
from image_quality import classifier_cams, confusion, load_items, read_rgb, scores

from pipeline.cam_config import CamConfig
from pipeline.refine import crf as crf_module
from pipeline.refine import image_labeller
from pipeline.refine.crf import CRFConfig
from pipeline.refine.image_labeller import ImageLabelConfig, label_image
from pipeline.schema import VOC_CLASSES

CANDIDATES = {
    "full (scale 1.0, 8 it)": {},
    "scale 0.5, 8 it": {"scale": 0.5},
    "scale 0.5, 5 it": {"scale": 0.5, "iterations": 5},
    "scale 0.35, 8 it": {"scale": 0.35},
}


class CrfTimer:
    """Wraps image_labeller.dense_crf to add up the seconds spent inside it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.real = crf_module.dense_crf

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.real(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def config_for(overrides: dict) -> ImageLabelConfig:
    base = ImageLabelConfig()
    crf = replace(base.cam_crf.crf, **overrides)
    return replace(base, method="cam_crf", cam_crf=replace(base.cam_crf, crf=crf))


def run(root: Path, items: list[dict], cams: dict[str, np.ndarray]) -> dict[str, dict]:
    timer = CrfTimer()
    image_labeller.dense_crf = timer
    totals = {name: {"conf": {}, "crf_s": 0.0, "label_s": 0.0} for name in CANDIDATES}
    configs = {name: config_for(o) for name, o in CANDIDATES.items()}
    for it in items:
        image = read_rgb(root, it)
        gt = cv2.imread(str(root / "gt" / f"{it['id']}.png"), cv2.IMREAD_GRAYSCALE)
        cam = cams.get(it["id"]) if it["tag_ids"] else None
        for name, cfg in configs.items():
            timer.seconds, started = 0.0, time.perf_counter()
            mask = label_image(image, cam, it["tag_ids"], cfg)
            totals[name]["label_s"] += time.perf_counter() - started
            totals[name]["crf_s"] += timer.seconds
            totals[name]["conf"][it["id"]] = confusion(gt, mask)
    image_labeller.dense_crf = timer.real
    return {name: summarise(t, len(items)) for name, t in totals.items()}


def summarise(total: dict, n_items: int) -> dict:
    ids = sorted(total["conf"])
    halves = {"all": ids, "even": ids[0::2], "odd": ids[1::2]}
    out = {}
    for half, chosen in halves.items():
        miou, iou = scores(sum(total["conf"][i] for i in chosen))
        out[half] = round(100 * miou, 1)
        if half == "all":
            out["horse"] = round(100 * iou[VOC_CLASSES.index("horse")], 1)
            out["person"] = round(100 * iou[VOC_CLASSES.index("person")], 1)
    out["crf_ms_per_image"] = round(1000 * total["crf_s"] / n_items, 1)
    out["label_ms_per_image"] = round(1000 * total["label_s"] / n_items, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--model", help="classifier checkpoint (CAMs computed once, cached)")
    ap.add_argument("--cams-npz", help="an npz of {item id: K x h x w CAMs} instead of --model")
    ap.add_argument("--cam-cache", default="/tmp/camcache", help="folder of cached CAM npz files")
    ap.add_argument("--limit", type=int, default=0, help="only the first N image items (0 = all)")
    ap.add_argument("--json-out", help="also write the figures here")
    args = ap.parse_args(argv)
    if not (args.model or args.cams_npz):
        ap.error("give --model or --cams-npz")
    root = Path(args.collection)
    items = load_items(root)[: args.limit or None]
    if args.cams_npz:
        with np.load(args.cams_npz) as data:
            cams = {k: data[k] for k in data.files}
    else:
        cams = classifier_cams(root, items, args.model, CamConfig(), Path(args.cam_cache))
    results = run(root, items, cams)
    full = results[next(iter(CANDIDATES))]
    print(f"{len(items)} images from {root}; defaults {CRFConfig()}")
    print("| CRF | mIoU all | even | odd | horse | person | CRF ms/image | speed-up | "
          "label ms/image |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        r["crf_speedup"] = round(full["crf_ms_per_image"] / max(r["crf_ms_per_image"], 1e-9), 2)
        print(f"| {name} | {r['all']} | {r['even']} | {r['odd']} | {r['horse']} | {r['person']} "
              f"| {r['crf_ms_per_image']} | {r['crf_speedup']}x | {r['label_ms_per_image']} |")  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
