"""Adversarial erasing (classifier.erasing_rounds; Wei et al., CVPR 2017) against today's CAMs.

Starting from a trained finetune=head classifier (its head is round 0), the erasing rounds run on
the collection's training images in this process with the training loop's own parts
(pipeline.train.erasing_rounds.run_rounds: erase with the previous head's CAMs, pool the frozen
features again, fit a head, stop when held-out mAP shows the object gone). Then one CAM pass
(default CamConfig, ImageNet prior fused in as the pipeline does) gives every dev image's maps
per round; each variant merges the first 1 + k rounds (pixelwise max, as compute_cams does with k
extra heads), labels every image with the default image route (cam_crf) and is scored as
benchmarks/image_quality.py scores, for all images and the halves of the sorted ids.

    .venv/bin/python benchmarks/adversarial_erasing.py --model /tmp/dev/clf.pt \\
        [--collection ../shared/data/dev] [--rounds 3] [--limit 8] [--save-model /tmp/dev/ae.pt]

--save-model writes the classifier with its erasing heads (what train-classifier with
erasing_rounds writes; `webseg pseudo-label --model` takes it); given such a checkpoint as
--model, the rounds are skipped and only the scoring runs.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from builtin_prior import summary
from image_quality import confusion, load_items, read_rgb

from pipeline.cam import compute_round_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier, save_model
from pipeline.collection import read_collection
from pipeline.models.erasing import merge_round_maps
from pipeline.models.imagenet_prior import load_prior
from pipeline.refine.image_labeller import ImageLabelConfig, label_image
from pipeline.train import erasing_rounds, finetune
from pipeline.train.classifier_data import load_training_set
from pipeline.train.config import ClassifierTrainConfig


def run_erasing(model, collection: str, cfg: ClassifierTrainConfig, limit: int) -> tuple:
    """The rounds on the collection's training items (the first `limit` when > 0); model gains
    the kept rounds' heads. Returns (held-out mAP before erasing, round results, seconds of the
    first pooling)."""
    data = load_training_set(read_collection(collection), cfg)
    images, targets = data.images[: limit or None], data.targets[: limit or None]
    pos_weight = finetune.positive_weights(torch.from_numpy(targets), cfg.max_pos_weight)
    started = time.perf_counter()
    first = erasing_rounds.pool_rows(model.backbone, images, targets, cfg, "cpu", model.input_stats)
    pooled_s = time.perf_counter() - started
    print(f"{len(images)} training images; first pooling {pooled_s:.0f} s", flush=True)
    first_map, results = erasing_rounds.run_rounds(
        model, images, targets, first, pos_weight, cfg, "cpu"
    )
    return first_map, results, pooled_s


def report_rounds(first_map: float, results: list) -> None:
    for r in results:
        print(f"round {r.number}: held-out mAP {r.heldout_map:.3f} (before erasing "
              f"{first_map:.3f}), loss {r.loss:.4f}, {r.seconds:.0f} s, "
              f"{'kept' if r.kept else 'dropped (object gone)'}", flush=True)  # fmt: skip


def round_cams(root: Path, items: list[dict], model, prior) -> dict[str, list[np.ndarray]]:
    """item id -> per round its K x h x w maps (round 0 fused with the prior)."""
    out, started = {}, time.perf_counter()
    for start in range(0, len(items), 8):
        chunk = items[start : start + 8]
        images, tags = [read_rgb(root, it) for it in chunk], [it["tag_ids"] for it in chunk]
        rounds, _ = compute_round_cams(model, images, tags, CamConfig(), prior=prior)
        out.update({it["id"]: r for it, r in zip(chunk, rounds, strict=True)})
    print(f"CAMs of {len(items)} images, {len(model.extra_heads) + 1} heads: "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return out


def score_item(job: tuple) -> np.ndarray:
    """(root, item, merged cam) -> confusion matrix of the default image route's labels."""
    root, it, cam = job
    gt = cv2.imread(str(root / "gt" / f"{it['id']}.png"), cv2.IMREAD_GRAYSCALE)
    mask = label_image(read_rgb(root, it), cam if it["tag_ids"] else None, it["tag_ids"],
                       ImageLabelConfig())  # fmt: skip
    return confusion(gt, mask)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--model", required=True, help="finetune=head classifier checkpoint (round 0)")
    ap.add_argument("--rounds", type=int, default=3, help="erasing rounds at most (AE-PSL: 3)")
    ap.add_argument("--threshold", type=float, default=ClassifierTrainConfig.erasing_threshold)
    ap.add_argument("--stop-ratio", type=float, default=ClassifierTrainConfig.erasing_stop_ratio)
    ap.add_argument("--limit", type=int, default=0, help="only the first N sorted ids (0 = all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--save-model", help="write the classifier with its erasing heads here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.collection)
    model, model_cfg, classes = load_classifier(args.model)
    seconds = [float("nan")] * len(model.extra_heads)  # a saved checkpoint's: not timed here
    if not model.extra_heads:
        cfg = ClassifierTrainConfig(model=model_cfg, erasing_rounds=args.rounds,
                                    erasing_threshold=args.threshold,
                                    erasing_stop_ratio=args.stop_ratio)  # fmt: skip
        first_map, results, _ = run_erasing(model, str(root), cfg, args.limit)
        report_rounds(first_map, results)
        seconds = [r.seconds for r in results if r.kept]
        if args.save_model:
            extra = {
                "finetune": "head",
                "erasing": erasing_rounds.round_metrics(first_map, results),
            }
            print("saved", save_model(model, model_cfg, args.save_model, classes, extra))
    items = sorted(load_items(root), key=lambda it: it["id"])[: args.limit or None]
    prior = load_prior(model.backbone, model_cfg.backbone, list(classes))
    cams = round_cams(root, items, model, prior)
    print("| CAMs | image mIoU | even | odd | horse | person | s / round |")
    print("|---|---|---|---|---|---|---|")
    for k in range(len(model.extra_heads) + 1):
        jobs = [(root, it, merge_round_maps(cams[it["id"]][: k + 1])) for it in items]
        with multiprocessing.Pool(args.workers) as pool:
            confs = pool.map(score_item, jobs, chunksize=4)
        whole, even, odd = summary(confs), summary(confs[0::2]), summary(confs[1::2])
        name = "no erasing (default)" if k == 0 else f"erasing, {k} round{'s' * (k > 1)} merged"
        cost = f"{np.mean(seconds[:k]):.0f}" if k and not np.isnan(seconds[0]) else "-"
        print(f"| {name} | {whole['miou']:.1f} | {even['miou']:.1f} | {odd['miou']:.1f} "
              f"| {whole['horse']:.1f} | {whole['person']:.1f} | {cost} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
