"""Image pseudo-label quality of ``pipeline.refine.image_labeller`` on a collection with gt/.

Runs ``label_image`` on every image item of the collection for each method and CAM source and
prints mIoU (21-class confusion matrix summed over all images; gt 255 excluded; predicted 255
counted as background; classes with an empty union skipped; also over the halves of the sorted
item ids, even and odd positions, to tune on one and report the other), horse and person IoU,
coverage (share of pixels not 255), wall and CPU seconds per image. Only this script reads gt/.

    .venv/bin/python benchmarks/image_quality.py --collection ../shared/data/dev \
        --methods cam_crf objectness dsrg --cams none centre /tmp/clf/run_lr3/model.pt

CAM sources (none may look at gt): ``none`` passes cam=None; ``centre`` is a crude CAM, the same
centre prior for every tag (exercises the CAM path but cannot tell tags apart); any other value is
a classifier checkpoint URI: its CAMs (``pipeline.cam.compute_cams`` with ``--cam-scales``,
``--cam-flip``, ``--cam-passes``, ``--cam-dropout``, the ImageNet prior fused in unless
``--cam-prior 0`` and the stride-16 LayerCAM unless ``--cam-layer 0``) are computed once and
cached as an npz under ``--cam-cache``.
Add ``--set objectness.cam_weight=0.5`` style overrides to try other settings.

The stochastic passes draw their masks from ``cam.seed``, and the labels of single images move a
lot with them (a few images of the rare classes set most of the mean), so compare settings over
several seeds: ``--cam-seeds 0 1 2 3 4`` scores each seed's CAMs and adds a row with the mean and
standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.cam_config import CamConfig
from pipeline.collection import load_label_space
from pipeline.refine.image_labeller import METHODS, ImageLabelConfig, label_image
from pipeline.refine.saliency import centre_prior
from pipeline.schema import IGNORE, VOC_CLASSES

N_CLASSES = len(VOC_CLASSES)


def load_items(root: Path) -> list[dict]:
    """Image items of the manifest, with tag ids from classes.json (or VOC)."""
    names = load_label_space(str(root))
    index = {n: i for i, n in enumerate(names)}
    items = [
        json.loads(line)
        for line in (root / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    items = [it for it in items if it.get("kind", "image") == "image"]
    for it in items:
        it["tag_ids"] = [index[t] for t in it["tags"] if t in index]
    return items


def centre_cam(image: np.ndarray, n_tags: int) -> np.ndarray:
    """Crude gt-free CAM: the same centre prior for every tag (exercises the CAM path only)."""
    return np.repeat(centre_prior(*image.shape[:2], 0.15)[None], n_tags, 0)


def read_rgb(root: Path, it: dict) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(root / it["uri"])), cv2.COLOR_BGR2RGB)


def cam_cache_file(model_uri: str, cam_cfg: CamConfig, root: Path, cache_dir: Path) -> Path:
    """One npz per (checkpoint file + mtime, CamConfig, collection)."""
    model = Path(model_uri).resolve()
    stamp = model.stat().st_mtime if model.exists() else 0
    key = f"{model}:{stamp}:{cam_cfg}:{root.resolve()}:prior-fused:features"  # as the CAM stage
    return cache_dir / f"{model.parent.name}_{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def classifier_cams(
    root: Path, items: list[dict], model_uri: str, cam_cfg: CamConfig, cache_dir: Path
) -> dict[str, np.ndarray]:
    """item id -> K x h x w CAMs of its tags, and "<id>.features" -> the C x h/8 x w/8 backbone
    features the CAM stage hands on, from the cache or computed (and cached) now."""
    path = cam_cache_file(model_uri, cam_cfg, root, cache_dir)
    if path.exists():
        with np.load(path) as data:
            cached = {k: data[k] for k in data.files}
        if all(it["id"] in cached for it in items):
            return cached
    from pipeline.cam import compute_cams
    from pipeline.checkpoint import load_classifier  # torch only when CAMs are computed

    model, model_cfg, classes = load_classifier(model_uri)
    if classes and tuple(classes) != tuple(VOC_CLASSES):
        print(f"warning: classifier label space {classes} differs from VOC")
    prior = None  # fused in as the pipeline's CAM stage does (cam.imagenet_prior)
    if cam_cfg.imagenet_prior and classes:
        from pipeline.models.imagenet_prior import load_prior

        prior = load_prior(model.backbone, model_cfg.backbone, list(classes))
    out, wall = {}, time.perf_counter()
    for start in range(0, len(items), 8):
        chunk = items[start : start + 8]
        images = [read_rgb(root, it) for it in chunk]
        features: list = []
        tags = [it["tag_ids"] for it in chunk]
        cams, _ = compute_cams(model, images, tags, cam_cfg, prior=prior, appearance=features)
        for it, cam, feature in zip(chunk, cams, features, strict=True):
            out[it["id"]], out[f"{it['id']}.features"] = cam, feature
    print(f"CAMs of {len(items)} images in {time.perf_counter() - wall:.0f} s -> {path}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def confusion(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    valid = gt != IGNORE
    p = np.where(pred == IGNORE, 0, pred)[valid].astype(np.int64)
    return np.bincount(gt[valid].astype(np.int64) * N_CLASSES + p, minlength=N_CLASSES**2).reshape(
        N_CLASSES, N_CLASSES
    )


def scores(conf: np.ndarray) -> tuple[float, np.ndarray]:
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def score_item(job: tuple) -> tuple:
    """Label one item -> (confusion matrix, non-ignore pixels, pixels, (wall s, CPU s)).
    job: (root, item, config, cam_source, features); ``cam_source``: "none", "centre" or the
    item's precomputed K x h x w CAMs; features: its backbone features or None."""
    root, it, cfg, cam_source, features = job
    image = read_rgb(root, it)
    gt = cv2.imread(str(root / "gt" / f"{it['id']}.png"), cv2.IMREAD_GRAYSCALE)
    if isinstance(cam_source, np.ndarray):
        cam = cam_source if it["tag_ids"] else None
    elif cam_source == "centre" and it["tag_ids"]:
        cam = centre_cam(image, len(it["tag_ids"]))
    else:
        cam = None
    wall, cpu = time.perf_counter(), time.process_time()
    mask = label_image(image, cam, it["tag_ids"], cfg, features=features)
    seconds = (time.perf_counter() - wall, time.process_time() - cpu)
    return confusion(gt, mask), int((mask != IGNORE).sum()), mask.size, seconds


def evaluate(
    root: Path,
    items: list[dict],
    cfg: ImageLabelConfig,
    cam_source: str | dict[str, np.ndarray],
    workers: int,
) -> dict:
    """Whole-collection scores; ``cam_source`` is "none", "centre" or item id -> CAMs (and
    "<id>.features" -> backbone features, as classifier_cams returns)."""
    if isinstance(cam_source, dict):
        jobs = [
            (root, it, cfg, cam_source[it["id"]], cam_source.get(f"{it['id']}.features"))
            for it in items
        ]
    else:
        jobs = [(root, it, cfg, cam_source, None) for it in items]
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(score_item, jobs, chunksize=4)
    else:
        results = [score_item(job) for job in jobs]
    conf = sum(r[0] for r in results)
    miou, iou = scores(conf)
    rank = {item_id: k for k, item_id in enumerate(sorted(it["id"] for it in items))}
    halves = [
        sum(r[0] for it, r in zip(items, results, strict=True) if rank[it["id"]] % 2 == half)
        for half in (0, 1)
    ]
    return {
        "miou": 100 * miou,
        "halves": [100 * scores(h)[0] for h in halves],  # even / odd positions in id order
        "horse": 100 * iou[VOC_CLASSES.index("horse")],
        "person": 100 * iou[VOC_CLASSES.index("person")],
        "coverage": 100 * sum(r[1] for r in results) / sum(r[2] for r in results),
        "fg_share": 100 * (conf[:, 1:].sum() / conf.sum()),
        "s_per_image": sum(r[3][0] for r in results) / len(items),
        "cpu_s_per_image": sum(r[3][1] for r in results) / len(items),
        "per_class": {
            VOC_CLASSES[c]: round(100 * float(v), 1) for c, v in enumerate(iou) if v == v
        },
    }


def parse_overrides(pairs: list[str], cfg=None):
    """``section.field=value`` pairs (e.g. ``objectness.cam_weight=0.5``) applied to cfg (a frozen
    dataclass; default ImageLabelConfig()) -> the changed copy."""
    cfg = ImageLabelConfig() if cfg is None else cfg
    for pair in pairs:
        key, value = pair.split("=", 1)
        *path, name = key.split(".")
        parents = [cfg]
        for part in path:
            parents.append(getattr(parents[-1], part))
        leaf = parents[-1]
        current = getattr(leaf, name)
        if isinstance(current, bool):
            typed = value.lower() in ("1", "true", "yes")
        else:  # YAML scalars, as in a config file: a number where a field takes "otsu" or one
            typed = yaml.safe_load(value)
            typed = float(typed) if isinstance(current, float) and isinstance(typed, int) else typed
        leaf = replace(leaf, **{name: typed})
        for parent, part in zip(reversed(parents[:-1]), reversed(path), strict=True):
            leaf = replace(parent, **{part: leaf})
        cfg = leaf
    return cfg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument(
        "--cams", nargs="+", default=["none"], help="none | centre | a classifier checkpoint"
    )
    ap.add_argument("--cam-scales", type=float, nargs="+", default=list(CamConfig().scales))
    ap.add_argument("--cam-flip", type=int, choices=[0, 1], default=int(CamConfig().flip))
    ap.add_argument("--cam-passes", type=int, default=CamConfig().stochastic_passes,
                    help="FickleNet-style stochastic passes (0 = off)")  # fmt: skip
    ap.add_argument("--cam-prior", type=int, choices=[0, 1], default=int(CamConfig().imagenet_prior),
                    help="fuse the ImageNet head's maps in, as the pipeline does (1, default)")  # fmt: skip
    ap.add_argument("--cam-cache", default="/tmp/camcache", help="folder of cached CAM npz files")
    ap.add_argument("--cam-layer", type=int, choices=[0, 1], default=int(CamConfig().layer_cam),
                    help="average the stride-16 LayerCAM into the maps (1, default)")  # fmt: skip
    ap.add_argument("--cam-dropout", type=float, default=CamConfig().stochastic_dropout,
                    help="share of hidden units each stochastic pass drops")  # fmt: skip
    ap.add_argument("--cam-seeds", type=int, nargs="+", default=[CamConfig().seed],
                    help="seeds of the stochastic passes; several: per-seed rows and their mean")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2, help="parallel processes")
    ap.add_argument(
        "--set", nargs="*", default=[], help="config overrides: objectness.cam_weight=0.5"
    )
    ap.add_argument("--per-class", action="store_true", help="also print per-class IoU")
    ap.add_argument("--limit", type=int, default=0, help="only the first N image items (0 = all)")
    args = ap.parse_args(argv)
    root = Path(args.collection)
    items = load_items(root)[: args.limit or None]
    print(f"{len(items)} images from {root}")
    print(
        "| method | cam | mIoU (even / odd) | horse | person | coverage % | pred fg % | s/image "
        "| cpu s/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    cam_cfgs = [
        CamConfig(
            scales=tuple(args.cam_scales),
            flip=bool(args.cam_flip),
            stochastic_passes=args.cam_passes,
            stochastic_dropout=args.cam_dropout,
            layer_cam=bool(args.cam_layer),
            imagenet_prior=bool(args.cam_prior),
            seed=seed,
        )
        for seed in args.cam_seeds
    ]
    for method in args.methods:
        cfg = replace(parse_overrides(args.set), method=method)
        for name in args.cams:
            if name in ("none", "centre"):
                print_row(method, name, evaluate(root, items, cfg, name, args.workers), args)
                continue
            label = Path(name).parent.name
            runs = []
            for cam_cfg in cam_cfgs:
                cams = classifier_cams(root, items, name, cam_cfg, Path(args.cam_cache))
                runs.append(evaluate(root, items, cfg, cams, args.workers))
                print_row(method, f"{label} seed {cam_cfg.seed}", runs[-1], args)
            if len(runs) > 1:
                print_spread(method, label, runs, args.per_class)


def print_row(method: str, label: str, r: dict, args: argparse.Namespace) -> None:
    """One table row of a run's figures (and its per-class IoU with --per-class)."""
    _table_row(method, label, runs=[r], figure=lambda values: f"{values[0]:.1f}")
    if args.per_class:
        print(f"per-class IoU: {r['per_class']}", flush=True)


def spread(values: list[float]) -> str:
    """'mean ± sd' (sample standard deviation) of per-seed figures."""
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def print_spread(method: str, label: str, runs: list[dict], per_class: bool) -> None:
    """The mean ± sd over seeds of the figures print_row shows (times: the mean)."""
    _table_row(method, f"{label}, {len(runs)} seeds", runs=runs, figure=spread)
    if per_class:
        names = [c for c in runs[0]["per_class"] if all(c in r["per_class"] for r in runs)]
        classes = {c: spread([r["per_class"][c] for r in runs]) for c in names}
        print(f"per-class IoU over seeds: {classes}", flush=True)


def _table_row(method: str, label: str, runs: list[dict], figure) -> None:
    """Print the table's columns for runs, each quality figure through figure(values over runs)
    and the seconds as their mean."""

    def over(key, index=None):
        return figure([r[key] if index is None else r[key][index] for r in runs])

    def seconds(key):
        return f"{np.mean([r[key] for r in runs]):.3f}"

    print(
        f"| {method} | {label} | {over('miou')} ({over('halves', 0)} / {over('halves', 1)}) "
        f"| {over('horse')} | {over('person')} | {over('coverage')} | {over('fg_share')} "
        f"| {seconds('s_per_image')} | {seconds('cpu_s_per_image')} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
