"""The built-in foreground prior (Saleh et al., ECCV 2016; pipeline.models.activation_prior) as
the image route's class-agnostic cue, against today's default route.

One pass computes, for every dev image, the CAMs exactly as the pipeline's CAM stage does (default
CamConfig, with the ImageNet prior head when the classifier has one) and the backbone's mid and
late activations (-> the prior map). Each variant then labels every image once; per-item
confusion matrices are summed for all of dev and for the halves of the sorted ids (even / odd
positions), as benchmarks/image_quality.py scores them.

    .venv/bin/python benchmarks/builtin_prior.py --model /tmp/dev/clf.pt \\
        [--collection ../shared/data/dev] [--variants default cam_crf:builtin ...]

Variants: ``default`` (cam_crf, background (1 - max CAM) ** 4); ``cam_crf:builtin`` /
``cam_crf:both`` (background 1 - prior / the mean of both); ``...+crf`` uses the prior after
Saleh's own 2-label dense CRF; ``objectness:colour|builtin|both`` (the objectness route's
saliency source).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from image_quality import confusion, load_items, read_rgb, scores

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig
from pipeline.checkpoint import load_classifier
from pipeline.models.activation_prior import captured_activations, foreground_prior
from pipeline.models.imagenet_prior import load_prior
from pipeline.refine.crf import CRFConfig, dense_crf
from pipeline.refine.image_labeller import ImageLabelConfig, label_image
from pipeline.schema import VOC_CLASSES

VARIANTS = (
    "default",
    "cam_crf:builtin",
    "cam_crf:builtin+crf",
    "cam_crf:both",
    "cam_crf:both+crf",
    "objectness:colour",
    "objectness:builtin",
    "objectness:both",
)


def cams_and_priors(root: Path, items: list[dict], model_uri: str) -> tuple[dict, dict, dict]:
    """item id -> K x h x w CAMs, item id -> h' x w' prior, and seconds per image of each. The
    prior's activations come from the CAM pass itself (scale 1, unflipped row), one image a time."""
    model, model_cfg, classes = load_classifier(model_uri)
    cfg = CamConfig()
    head = (
        load_prior(model.backbone, model_cfg.backbone, list(classes))
        if cfg.imagenet_prior
        else None
    )
    cams, priors, cam_s, prior_s = {}, {}, 0.0, 0.0
    for it in items:
        image = read_rgb(root, it)
        t = time.perf_counter()
        with captured_activations(model.backbone) as calls:
            maps, _ = compute_cams(model, [image], [it["tag_ids"]], cfg, prior=head)
        cam_s += time.perf_counter() - t
        t = time.perf_counter()
        acts = [a[0].float().numpy() for a in calls[cfg.scales.index(1.0)]]
        priors[it["id"]] = foreground_prior(acts, *acts[0].shape[1:])
        cams[it["id"]] = maps[0]
        prior_s += time.perf_counter() - t
    n = len(items)
    return cams, priors, {"cam_s": cam_s / n, "prior_s": prior_s / n}


def cached(root: Path, items: list[dict], model_uri: str, cache: Path) -> tuple[dict, dict, dict]:
    """``cams_and_priors``, read from / written to the npz ``cache`` (keyed by checkpoint mtime)."""
    stamp = str(Path(model_uri).stat().st_mtime)
    if cache.exists():
        with np.load(cache) as data:
            if str(data["stamp"]) == stamp and len(data.files) == 2 * len(items) + 3:
                cams = {it["id"]: data["cam/" + it["id"]] for it in items}
                priors = {it["id"]: data["prior/" + it["id"]] for it in items}
                return (
                    cams,
                    priors,
                    {"cam_s": float(data["cam_s"]), "prior_s": float(data["prior_s"])},
                )
    cams, priors, cost = cams_and_priors(root, items, model_uri)
    arrays = {f"cam/{k}": v for k, v in cams.items()} | {f"prior/{k}": v for k, v in priors.items()}
    np.savez_compressed(cache, stamp=stamp, **arrays, **cost)
    return cams, priors, cost


def crf_prior(image: np.ndarray, prior: np.ndarray, side: int) -> np.ndarray:
    """Saleh's refinement: the prior through a 2-label dense CRF at the route's working size."""
    scale = min(1.0, side / max(image.shape[:2]))
    h, w = round(image.shape[0] * scale), round(image.shape[1] * scale)
    small = np.ascontiguousarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
    p = cv2.resize(prior, (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 1)
    return dense_crf(small, np.stack([1 - p, p]), CRFConfig())[1]


def variant_config(name: str) -> ImageLabelConfig:
    cfg = ImageLabelConfig()
    if name == "default":
        return cfg
    method, source = name.split(":")
    source = source.removesuffix("+crf")
    if method == "cam_crf":
        return replace(cfg, cam_crf=replace(cfg.cam_crf, background=source))
    return replace(cfg, method="objectness",
                   objectness=replace(cfg.objectness, saliency_source=source))  # fmt: skip


def score_item(job: tuple) -> tuple[np.ndarray, float]:
    """(root, item, variant, cam, prior) -> (confusion matrix, wall s of the labelling)."""
    root, it, name, cam, prior = job
    image = read_rgb(root, it)
    gt = cv2.imread(str(root / "gt" / f"{it['id']}.png"), cv2.IMREAD_GRAYSCALE)
    cfg = variant_config(name)
    t = time.perf_counter()
    if name.endswith("+crf") and it["tag_ids"]:
        prior = crf_prior(image, prior, cfg.work_side)
    mask = label_image(image, cam if it["tag_ids"] else None, it["tag_ids"], cfg, prior)
    return confusion(gt, mask), time.perf_counter() - t


def summary(confs: list[np.ndarray]) -> dict:
    miou, iou = scores(sum(confs))
    return {"miou": 100 * miou, "horse": 100 * iou[VOC_CLASSES.index("horse")],
            "person": 100 * iou[VOC_CLASSES.index("person")]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument(
        "--model", required=True, help="classifier checkpoint (frozen ImageNet backbone)"
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N sorted ids (0 = all)")
    ap.add_argument("--cache", default="/tmp/builtin_prior_cache.npz", help="CAM + prior npz")
    args = ap.parse_args(argv)
    root = Path(args.collection)
    items = sorted(load_items(root), key=lambda it: it["id"])[: args.limit or None]
    cams, priors, cost = cached(root, items, args.model, Path(args.cache))
    print(f"{len(items)} images; CAMs {cost['cam_s']:.3f} s/image, "
          f"prior from their activations {cost['prior_s']:.3f} s/image")  # fmt: skip
    print("| variant | image mIoU | even | odd | horse | person | label s/image |")
    print("|---|---|---|---|---|---|---|")
    for name in args.variants:
        jobs = [(root, it, name, cams[it["id"]], priors[it["id"]]) for it in items]
        with multiprocessing.Pool(args.workers) as pool:
            results = pool.map(score_item, jobs, chunksize=4)
        confs = [r[0] for r in results]
        whole, even, odd = summary(confs), summary(confs[0::2]), summary(confs[1::2])
        seconds = sum(r[1] for r in results) / len(items)
        print(f"| {name} | {whole['miou']:.1f} | {even['miou']:.1f} | {odd['miou']:.1f} "
              f"| {whole['horse']:.1f} | {whole['person']:.1f} | {seconds:.3f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
