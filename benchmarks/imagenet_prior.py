"""The ImageNet-head prior (cam.imagenet_prior) side by side with the learned head's CAMs alone.

One pass computes both CAM sets for every dev image (the learned head, and the prior head in its
place: the same backbone features, stochastic passes and flips); the image route (default
``cam_crf``) then labels each image from each fusion and is scored as benchmarks/image_quality.py
scores, for all images and both halves of the sorted ids (even / odd positions).

    .venv/bin/python benchmarks/imagenet_prior.py --model /tmp/dev/clf.pt \\
        [--collection ../shared/data/dev] [--modes none prior mean max]

none: learned maps only; prior: prior maps only (learned where a tag has no ImageNet classes);
mean: their mean, re-normalised (what ``imagenet_prior: true`` does); max: the pixelwise max.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
from image_quality import evaluate, load_items, read_rgb

from pipeline.cam import CamConfig, compute_cams
from pipeline.checkpoint import load_classifier
from pipeline.models.imagenet_prior import load_prior
from pipeline.refine.image_labeller import ImageLabelConfig


def both_cams(root: Path, items: list[dict], model_uri: str) -> tuple[dict, dict, list[bool]]:
    """item id -> learned K x h x w CAMs, item id -> prior CAMs, per class: has a prior."""
    model, model_cfg, classes = load_classifier(model_uri)
    head = load_prior(model.backbone, model_cfg.backbone, list(classes))
    if head is None:
        raise SystemExit(
            "no ImageNet prior for this classifier (fine-tuned backbone or no classes)"
        )
    prior_model = copy.deepcopy(model)
    prior_model.classifier.weight.data[:] = head.rows  # the prior rows as the CAM head
    cfg = CamConfig(imagenet_prior=False)
    learned, prior, wall = {}, {}, time.perf_counter()
    for start in range(0, len(items), 8):
        chunk = items[start : start + 8]
        images, tags = [read_rgb(root, it) for it in chunk], [it["tag_ids"] for it in chunk]
        for out, net in ((learned, model), (prior, prior_model)):
            cams, _ = compute_cams(net, images, tags, cfg)
            out.update({it["id"]: c for it, c in zip(chunk, cams, strict=True)})
    print(f"CAMs of {len(items)} images, both heads: {time.perf_counter() - wall:.0f} s")
    return learned, prior, head.has.tolist()


def fuse(items: list[dict], learned: dict, prior: dict, has: list[bool], mode: str) -> dict:
    out = {}
    for it in items:
        maps = learned[it["id"]].copy()
        for k, tag in enumerate(it["tag_ids"]):
            if mode == "none" or not has[tag - 1]:
                continue
            a, b = learned[it["id"]][k], prior[it["id"]][k]
            maps[k] = {"prior": b, "mean": (a + b) / 2, "max": np.maximum(a, b)}[mode]
            peak = maps[k].max()
            maps[k] = maps[k] / peak if peak > 0 else maps[k]
        out[it["id"]] = maps
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument(
        "--model", required=True, help="classifier checkpoint (frozen ImageNet backbone)"
    )
    ap.add_argument("--modes", nargs="+", default=["none", "prior", "mean", "max"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    root = Path(args.collection)
    items = load_items(root)
    learned, prior, has = both_cams(root, items, args.model)
    ids = sorted(it["id"] for it in items)
    even = {i for n, i in enumerate(ids) if n % 2 == 0}
    halves = {"even": [it for it in items if it["id"] in even],
              "odd": [it for it in items if it["id"] not in even]}  # fmt: skip
    print("| CAMs | image mIoU (even / odd) | horse | person |\n|---|---|---|---|")
    for mode in args.modes:
        cams = fuse(items, learned, prior, has, mode)
        whole = evaluate(root, items, ImageLabelConfig(), cams, args.workers)
        half = {k: evaluate(root, v, ImageLabelConfig(), cams, args.workers)["miou"]
                for k, v in halves.items()}  # fmt: skip
        print(f"| {mode} | {whole['miou']:.1f} ({half['even']:.1f} / {half['odd']:.1f}) "
              f"| {whole['horse']:.1f} | {whole['person']:.1f} |", flush=True)  # fmt: skip
        print(json.dumps(whole["per_class"]))


if __name__ == "__main__":
    main()
