"""Logit shifts for a segmenter's restricted-to-tags image predictions, scored side by side.

Every image of the collection goes through the segmenter once (`segment`'s resizing and
upsampling: long side --long-side, bilinear logits at gt size); each variant shifts the logits
before the argmax over background + the image's tags: none; presence (predict.prior_shift,
log(all pixels / pixels of the training masks holding the class)); logit adjustment
-tau log p(c) (Menon et al.) for each --tau. Counts come from the training label set's masks.
Scored like `webseg evaluate` on images, for all and the halves of the sorted ids. Also the
segmenter's agreement with its own training pseudo-labels (mIoU of the raw prediction against
them), which shows whether it fits what it learned from.

    .venv/bin/python benchmarks/prior_shift.py --model /tmp/segm/ce/model/model.pt \\
        --labels /tmp/dev/labels [--collection ../shared/data/dev] [--tau 0.5 1]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import schema, storage
from pipeline.collection import load_label_space, read_collection
from pipeline.decode import DecodeConfig, read_image
from pipeline.evaluate.inputs import index_rows, list_gt, read_manifest, read_mask
from pipeline.evaluate.metrics import ConfusionMatrix
from pipeline.models.classifier import input_stats, normalize
from pipeline.tracking.registry import load_segmenter_file
from pipeline.train.class_weights import class_pixel_counts, presence_shift
from pipeline.train.config import checkpoint_eval_side
from pipeline.train.segmenter_data import read_label_set, training_masks


def logits_at(model, image: np.ndarray, long_side: int, shape: tuple[int, int]) -> torch.Tensor:
    import cv2

    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    x = normalize(torch.from_numpy(np.ascontiguousarray(small))[None], input_stats(model.backbone))
    with torch.inference_mode():
        return F.interpolate(model(x).float(), size=shape, mode="bilinear", align_corners=False)[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--model", required=True, help="segmenter checkpoint")
    ap.add_argument("--labels", required=True, help="the label set it was trained on")
    ap.add_argument("--tau", type=float, nargs="*", default=[0.5, 1.0])
    ap.add_argument("--long-side", type=int, default=0, help="0: the checkpoint's eval_long_side")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, info = load_segmenter_file(args.model)
    long_side = args.long_side or checkpoint_eval_side(info)
    classes = load_label_space(args.collection)
    n = len(classes)
    sources, _, _ = read_label_set(args.labels, 0.0)
    pixels, image_pixels = class_pixel_counts(training_masks(sources), n)
    prior = np.maximum(pixels, 1) / max(1, pixels.sum())
    shifts = {"none": np.zeros(n), "presence": presence_shift(pixels, image_pixels)}
    shifts |= {f"logit adjustment tau {t:g}": -t * np.log(prior) for t in args.tau}
    items = {item.id: item for item in read_collection(args.collection).items}
    labels = index_rows(read_manifest(args.labels))
    images = sorted((i, uri) for i, frame, uri in list_gt(args.collection) if frame is None)
    cms = {(name, half): ConfusionMatrix(n) for name in shifts for half in ("all", "even", "odd")}
    own = ConfusionMatrix(n)
    for k, (item_id, gt_uri) in enumerate(images):
        item, gt = items[item_id], read_mask(gt_uri)
        logits = logits_at(model, read_image(item.uri, DecodeConfig()), long_side, gt.shape)
        blocked = torch.ones(n, dtype=torch.bool)
        blocked[[schema.BACKGROUND, *item.tag_ids]] = False
        row = labels.get((item_id, None))
        if row and row[schema.STATUS] == schema.LABELLED:
            label = read_mask(storage.resolve(args.labels, row[schema.MASK_URI]))
            raw = logits.argmax(0).numpy().astype(np.uint8)
            own.add(raw, label)  # 255 in the label is skipped
        for name, shift in shifts.items():
            shifted = logits + torch.as_tensor(shift, dtype=torch.float32).view(-1, 1, 1)
            shifted[blocked] = -torch.inf
            pred = shifted.argmax(0).numpy().astype(np.uint8)
            for half in ("all", ("even", "odd")[k % 2]):
                cms[(name, half)].add(pred, gt)
    print(f"{len(images)} images; raw prediction against its own training labels: "
          f"{100 * own.miou():.1f} mIoU")  # fmt: skip
    print(
        "| shift | image mIoU (even / odd) | horse | person | background |\n|---|---|---|---|---|"
    )
    for name in shifts:
        iou = cms[(name, "all")].iou()
        print(f"| {name} | {100 * cms[(name, 'all')].miou():.1f} "
              f"({100 * cms[(name, 'even')].miou():.1f} / {100 * cms[(name, 'odd')].miou():.1f}) "
              f"| {100 * iou[classes.index('horse')]:.1f} | {100 * iou[classes.index('person')]:.1f} "
              f"| {100 * iou[0]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
