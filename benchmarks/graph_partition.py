"""Inter-image graph partitioning (Fan et al., ECCV 2018) applied to a label set's image masks.

For every tag, its images' regions in the pseudo-labels (connected components of the tag's class)
become nodes of one graph over the frozen backbone's features of the classifier checkpoint
(stride 32, the image's long side at --long-side px); pipeline.refine.graph_partition cuts it and
the dropped regions become 255. Both label sets, before and after, are scored against gt/ like
`webseg evaluate` (255 as background), for all images and the halves of the sorted ids, with the
per-class IoU of the classes that have fewer than 10 images.

    .venv/bin/python benchmarks/graph_partition.py --labels /tmp/dev/labels --model /tmp/dev/clf.pt \\
        [--collection ../shared/data/dev] [--min-images 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from image_quality import confusion, load_items, read_rgb, scores

from pipeline import schema, storage
from pipeline.checkpoint import load_classifier
from pipeline.collection import load_label_space
from pipeline.evaluate.inputs import read_manifest, read_mask
from pipeline.models.classifier import input_stats, normalize
from pipeline.refine.graph_partition import GraphPartitionConfig, partition_tag


def backbone_features(model, rgb: np.ndarray, long_side: int) -> np.ndarray:
    """DxhxW float32 stride-32 features of the classifier's (frozen) backbone."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    small = cv2.resize(rgb, (max(32, round(w * scale)), max(32, round(h * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    x = normalize(torch.from_numpy(np.ascontiguousarray(small))[None], input_stats(model.backbone))
    with torch.inference_mode():
        return model.backbone(x)[0].float().numpy()


def halves(confs: list[np.ndarray]) -> tuple[float, float, float, np.ndarray]:
    whole, iou = scores(sum(confs))
    return 100 * whole, 100 * scores(sum(confs[0::2]))[0], 100 * scores(sum(confs[1::2]))[0], iou


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--labels", required=True, help="pseudo-label set of the collection")
    ap.add_argument(
        "--model", required=True, help="classifier checkpoint (its backbone's features)"
    )
    ap.add_argument("--long-side", type=int, default=320)
    ap.add_argument("--min-images", type=int, default=GraphPartitionConfig.min_images)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.collection)
    names = load_label_space(str(root))
    rows = {
        r[schema.ID]: r for r in read_manifest(args.labels) if r.get(schema.FRAME_INDEX) is None
    }
    items = sorted(load_items(root), key=lambda it: it["id"])
    model, _, _ = load_classifier(args.model)
    started = time.perf_counter()
    masks, features = {}, {}
    for it in items:
        row = rows.get(it["id"])
        if row is None or row[schema.STATUS] != schema.LABELLED:
            continue
        masks[it["id"]] = read_mask(storage.resolve(args.labels, row[schema.MASK_URI]))
        features[it["id"]] = backbone_features(model, read_rgb(root, it), args.long_side)
    feature_s = time.perf_counter() - started
    by_tag: dict[int, list[str]] = defaultdict(list)
    for it in items:
        for tag in it["tag_ids"]:
            if it["id"] in masks:
                by_tag[tag].append(it["id"])
    cfg = GraphPartitionConfig(min_images=args.min_images)
    started = time.perf_counter()
    new = dict(masks)
    for tag, ids in sorted(by_tag.items()):
        partitioned = partition_tag([new[i] for i in ids], [features[i] for i in ids], tag, cfg)
        new.update(zip(ids, partitioned, strict=True))
    partition_s = time.perf_counter() - started
    changed = sum(int((new[i] != masks[i]).any()) for i in masks)
    before, after = [], []
    for it in items:
        gt = read_mask(str(root / "gt" / f"{it['id']}.png"))
        empty = np.zeros_like(gt)
        before.append(confusion(gt, masks.get(it["id"], empty)))
        after.append(confusion(gt, new.get(it["id"], empty)))
    rare = [t for t, ids in sorted(by_tag.items()) if len(ids) < 10]
    print(f"{len(masks)} labelled images; features {feature_s / max(1, len(masks)):.3f} s/image, "
          f"partition {partition_s:.2f} s in all; {changed} masks changed")  # fmt: skip
    print("| labels | image mIoU | even | odd | horse | person | rare classes (< 10 images) |")
    print("|---|---|---|---|---|---|---|")
    for name, confs in (("as labelled", before), ("graph-partitioned", after)):
        whole, even, odd, iou = halves(confs)
        rare_text = ", ".join(f"{names[t]} {100 * iou[t]:.1f}" for t in rare)
        print(f"| {name} | {whole:.1f} | {even:.1f} | {odd:.1f} | "
              f"{100 * iou[names.index('horse')]:.1f} | {100 * iou[names.index('person')]:.1f} "
              f"| {rare_text} |")  # fmt: skip


if __name__ == "__main__":
    main()
