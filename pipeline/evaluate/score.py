"""Score a pseudo-label set against a collection's ground truth: image mIoU and video J.

    python -m pipeline.evaluate.score LABELS COLLECTION [--json OUT.json]

Only this package (reading through pipeline/evaluate/inputs.py) and the report built on it may read
a collection's gt/. Scoring walks gt/, so an item the label set lacks cannot raise the score: it
counts as all background and as missing. Metrics live in evaluate/metrics.py, the summary and its
terminal table in evaluate/summary.py.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from pipeline import schema, storage
from pipeline.collection import load_label_space
from pipeline.evaluate.inputs import index_rows, item_name, list_gt, load_pair, read_manifest
from pipeline.evaluate.metrics import (
    ConfusionMatrix,
    Tally,
    VideoTally,
    histogram_foreground_iou,
    pair_histogram,
)
from pipeline.evaluate.summary import format_table, summarise
from pipeline.schema import IGNORE


def evaluate_labels(labels_uri: str, collection_uri: str, workers: int = 8) -> dict:
    """Scores a label set against a collection's gt/ (see module docstring); JSON-able dict.

    Keys: image_miou (predicted 255 counted as background), image_miou_confident (predicted-255
    pixels excluded), coverage (share of scored image pixels with a confident label from a labelled
    or filtered row), per_class_iou {name: iou} over classes present, frame_miou, frame_coverage,
    videos {id: {j, j_relevant, frames, relevant_frames, missing, labelled, filtered, failed}},
    mean_video_j, mean_video_j_relevant, status_counts, images_scored, frames_scored, missing.
    IoUs in percent rounded to 0.1 (None where undefined). Failed or missing rows count as all
    background; filtered frames as all background. Raises ValueError naming the item when a mask's
    size differs from its gt.
    """
    classes = list(load_label_space(collection_uri))
    rows = read_manifest(labels_uri)
    index = index_rows(rows)
    gt_items = list_gt(collection_uri)
    n = len(classes)
    images = Tally(ConfusionMatrix(n), ConfusionMatrix(n))
    frames = Tally(ConfusionMatrix(n), ConfusionMatrix(n))
    videos: dict[str, VideoTally] = defaultdict(VideoTally)
    missing = 0

    def load(item):
        item_id, frame, gt_uri = item
        name = item_name(item_id, frame)
        # a frame without its own row takes its video's whole-item row (a video that failed whole)
        row = index.get((item_id, frame)) or index.get((item_id, None))
        pred, gt, covered = load_pair(labels_uri, row, gt_uri, name)
        return item, row, pair_histogram(pred, gt), covered

    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding PNGs releases the GIL
        chunks = (gt_items[i : i + 64] for i in range(0, len(gt_items), 64))  # bounds memory
        for (item_id, frame, _), row, hist, covered in chain.from_iterable(
            pool.map(load, chunk) for chunk in chunks
        ):
            lost = row is None or row[schema.STATUS] == schema.FAILED
            missing += lost
            try:
                (images if frame is None else frames).add(hist, covered)
            except ValueError as error:
                raise ValueError(f"{item_name(item_id, frame)}: {error}") from error
            if frame is not None:
                video, j = videos[item_id], histogram_foreground_iou(hist)
                video.frame_j.append(j)
                video.missing += lost
                if hist[1:IGNORE].sum():  # gt has foreground
                    video.relevant_j.append(j)
    return summarise(classes, rows, images, frames, videos, missing)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", help="label set folder or s3:// prefix")
    parser.add_argument("collection", help="collection holding gt/ (and classes.json)")
    parser.add_argument("--json", help="also write the result here as JSON")
    args = parser.parse_args(argv)
    result = evaluate_labels(args.labels, args.collection)
    print(format_table(result))
    if args.json:
        storage.write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
