"""CAM-stage cost of the stride-16 LayerCAM (``cam.layer_cam``): the same images through
``compute_cams`` with it off and on, chunk by chunk in turn (a busy machine slows both alike).

    .venv/bin/python benchmarks/layer_cam_cost.py --model /tmp/os32/clf.pt \
        --collection ../shared/data/dev --limit 64

Prints images/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from image_quality import load_items, read_rgb

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier
from pipeline.models.imagenet_prior import load_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev")
    )
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args()
    root = Path(args.collection)
    items = load_items(root)[: args.limit]
    model, model_cfg, classes = load_classifier(args.model)
    prior = load_prior(model.backbone, model_cfg.backbone, list(classes))
    cfgs = {"off": CamConfig(layer_cam=False), "on": CamConfig(layer_cam=True)}
    seconds = dict.fromkeys(cfgs, 0.0)
    for start in range(0, len(items), args.chunk):
        chunk = items[start : start + args.chunk]
        images = [read_rgb(root, it) for it in chunk]
        tags = [it["tag_ids"] for it in chunk]
        for name, cfg in cfgs.items():
            began = time.perf_counter()
            compute_cams(model, images, tags, cfg, prior=prior)
            seconds[name] += time.perf_counter() - began
    for name in cfgs:
        print(
            f"layer_cam {name:>3}: {len(items) / seconds[name]:.2f} images/s ({seconds[name]:.1f} s)"
        )
    print(f"on / off time: {seconds['on'] / seconds['off']:.2f}x over {len(items)} images")


if __name__ == "__main__":
    main()
