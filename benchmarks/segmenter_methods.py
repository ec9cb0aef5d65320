"""Segmenter training methods and heads on one label set, each trained, used and scored the same way.

Every variant is one YAML under `segmenter:` (or a `train-segmenter` flag) on top of the default
config. Each is trained with `webseg train-segmenter --epochs N`, relabels the collection with
`webseg predict --restrict-to-tags` and is scored by `webseg evaluate`; the image confusion is also
summed over the halves of the sorted image ids (even / odd), as the other benchmarks report.

    .venv/bin/python benchmarks/segmenter_methods.py --labels /tmp/dev/labels \\
        --collection ../shared/data/dev --epochs 4 --work-dir /tmp/segm \\
        --variants ce sec dsrg stc head=pspnet ...

A variant whose model already exists under --work-dir is not trained again (reruns resume the
table); its train seconds are then read from the JSON it left.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml
from segmenter_heads import webseg

from pipeline.collection import load_label_space
from pipeline.evaluate.inputs import index_rows, list_gt, load_pair, read_manifest
from pipeline.evaluate.metrics import ConfusionMatrix, Tally, pair_histogram
from pipeline.models.config import HEADS

VARIANTS = {
    "ce": {},
    "sec": {"segmenter": {"loss": "sec"}},
    "dsrg": {"segmenter": {"seed_growing": "dsrg"}},
    "stc": {"segmenter": {"curriculum": "simple_first"}},
    "la0.5": {"segmenter": {"logit_adjustment": 0.5}},
    "repeat": {"segmenter": {"class_balance": "repeat"}},
    **{f"finetune={mode}": {"segmenter": {"finetune": mode}} for mode in ("frozen", "partial")},
    **{
        f"head={head}": {"segmenter": {"model": {"head": head}}}
        for head in HEADS  # "ce" is the default head (fastfcn since 407053e; deeplabv3 before)
    },
}
FLAGS = {"minconf": ["--min-confidence", "median"]}  # resolved against the label set below


def median_confidence(labels: str) -> float:
    import pandas as pd

    manifest = pd.read_parquet(Path(labels) / "manifest.parquet")
    return float(manifest.loc[manifest["status"] == "labelled", "confidence"].median())


def image_halves(predicted: str, collection: str) -> dict:
    """Image mIoU (255 as background, as evaluate) over all images and the sorted-id halves."""
    n = len(load_label_space(collection))
    index = index_rows(read_manifest(predicted))
    images = sorted((i, uri) for i, frame, uri in list_gt(collection) if frame is None)
    halves = {k: Tally(ConfusionMatrix(n), ConfusionMatrix(n)) for k in ("all", "even", "odd")}
    for k, (item_id, gt_uri) in enumerate(images):
        hist = pair_histogram(
            *load_pair(predicted, index.get((item_id, None)), gt_uri, item_id)[:2]
        )
        for half in ("all", ("even", "odd")[k % 2]):
            halves[half].add(hist, True)
    return {f"{k}_miou": round(100 * t.cm.miou(), 1) for k, t in halves.items()} | {
        "background_iou": round(float(100 * halves["all"].cm.iou()[0]), 1)
    }


def run_variant(name: str, args: argparse.Namespace) -> dict:
    work = Path(args.work_dir) / name.replace("=", "-")
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(VARIANTS.get(name, {})) if VARIANTS.get(name) else "{}\n")
    flags = list(FLAGS.get(name, []))
    if flags[-1:] == ["median"]:
        flags[-1] = f"{median_confidence(args.labels):.4f}"
    model, predicted, timing = work / "model", work / "predicted", work / "train.json"
    if not (model / "model.pt").exists():
        started = time.perf_counter()
        webseg("train-segmenter", "--labels", args.labels, "--out", str(model),
               "--epochs", str(args.epochs), "--config", str(config), *flags)  # fmt: skip
        timing.write_text(json.dumps({"train_s": round(time.perf_counter() - started, 1)}))
    webseg("predict", "--model", str(model), "--collection", args.collection,
           "--out", str(predicted), "--restrict-to-tags", "--overwrite", "--config", str(config))  # fmt: skip
    scores = webseg("evaluate", "--labels", str(predicted), "--collection", args.collection)
    per_class = scores.get("per_class_iou", {})
    videos = {v: row.get("j") for v, row in scores.get("videos", {}).items()}
    return {
        **json.loads(timing.read_text()),
        **image_halves(str(predicted), args.collection),
        "horse": per_class.get("horse"),
        "person": per_class.get("person"),
        "mean_video_j": scores.get("mean_video_j"),
        "videos": videos,
        "flags": flags,
        "yaml": VARIANTS.get(name, {}),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, help="pseudo-label set to train on")
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--work-dir", default="segmenter_methods_runs")
    ap.add_argument("--variants", nargs="+", default=["ce", "sec", "dsrg", "stc"],
                    choices=[*VARIANTS, *FLAGS])  # fmt: skip
    args = ap.parse_args(argv)
    out = Path(args.work_dir) / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in args.variants:
        print(f"== {name}", flush=True)
        results[name] = run_variant(name, args)
        out.write_text(json.dumps(results, indent=1))
        row = results[name]
        print(f"| {name} | {row['all_miou']} ({row['even_miou']} / {row['odd_miou']}) | "
              f"{row['horse']} | {row['person']} | {row['background_iou']} | "
              f"{row['mean_video_j']} | {row['train_s']} |", flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    main()
