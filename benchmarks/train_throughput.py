"""Segmenter training throughput (samples/s) with 1 and 2 Ray Train workers on this machine.

    python benchmarks/train_throughput.py --labels LABELS_URI --epochs 2 --workers 1 2 --limit 64

Each setting trains a fresh model for --epochs on the label set (no validation, MLflow in a
throwaway sqlite store) and reports the training samples/s of the last epoch (the first one also
pays for Ray Data start-up), as measured inside the loop: samples seen by all workers / epoch time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace

import ray

from pipeline import schema, storage
from pipeline.output import read_table, write_manifest
from pipeline.train.config import SegmenterTrainConfig
from pipeline.train.segmenter import train_segmenter


def subset_label_set(labels: str, limit: int, folder: str) -> str:
    """A label set in folder: the first `limit` labelled image rows (masks stay in place)."""
    rows = read_table(storage.join(labels, schema.MANIFEST_NAME)).to_pylist()
    kept = [
        r for r in rows if r[schema.STATUS] == schema.LABELLED and r[schema.FRAME_INDEX] is None
    ]
    for row in kept[:limit]:
        row[schema.MASK_URI] = storage.resolve(labels, row[schema.MASK_URI])
    write_manifest(folder, kept[:limit])
    storage.write_text(
        storage.join(folder, schema.RUN_NAME),
        storage.read_text(storage.join(labels, schema.RUN_NAME)),
    )
    return folder


def measure(labels: str, workers: int, epochs: int, cfg: SegmenterTrainConfig) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run_cfg = replace(
            cfg,
            workers=workers,
            epochs=epochs,
            val_collection=None,
            preview_items=0,
            tracking_uri=f"sqlite:///{folder}/mlflow.db",
        )
        started = time.time()
        result = train_segmenter(labels, os.path.join(folder, "model"), run_cfg)
    return {
        "workers": workers,
        "samples_per_s": round(result["samples_per_s"], 2),
        "train_samples": result["train_samples"],
        "wall_s": round(time.time() - started, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="pseudo-label set URI")
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs per setting (the last one is reported)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare"
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N labelled images")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    cfg = SegmenterTrainConfig()
    with tempfile.TemporaryDirectory() as folder:
        labels = subset_label_set(args.labels, args.limit, folder) if args.limit else args.labels
        results = [measure(labels, n, args.epochs, cfg) for n in args.workers]
    for row in results:
        print(json.dumps(row))
    ray.shutdown()
    return results


if __name__ == "__main__":
    main()
