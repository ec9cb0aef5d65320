"""Affinity random walk (PSA, Ahn & Kwak 2018; IRN's labels and walk, Ahn et al. 2019) on the
frozen Lite0 features, against the default image route, on dev and both halves. Not wired in:
on dev it scores far below the default (docs/quality.md).

Per image: the default CAMs (learned head + ImageNet prior); IRN's affinity labels (CRF of the
CAMs against a constant background of 0.30 gives sure foreground, of 0.05 sure background, the
rest ignore) at stride 8; a small head on the stride-8, stride-16 and last features is trained
(PSA's balanced loss over pixel pairs within ``--radius``) to give affinities
exp(-mean |f_i - f_j|); the CAMs at stride 8 are walked ``2 ** --logt`` steps along the
column-normalised affinities raised to ``--beta``, then labelled two ways: IRN's (walked maps over
their global max against a constant background of ``--bg``) and the default ``cam_crf`` on the
walked maps, each peak-normalised.

    .venv/bin/python benchmarks/affinity_walk.py --model /tmp/dev/clf.pt [--logt 8] [--beta 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from image_quality import confusion, load_items, read_rgb, scores
from torch import nn

from pipeline.cam import CamConfig, compute_cams, working_size
from pipeline.checkpoint import load_classifier
from pipeline.models.classifier import normalize
from pipeline.models.imagenet_prior import load_prior
from pipeline.refine.image_labeller import (
    CamCRFConfig,
    ImageLabelConfig,
    _work_inputs,
    cam_crf_labels,
    label_image,
)
from pipeline.schema import IGNORE, VOC_CLASSES

LEVELS = (1, 2, 3)  # forward_levels: stride 8, stride 16, the last (1280 channels)
WAYS = ("default cam_crf", "walk, IRN's background", "walk, then cam_crf")


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) of half a disc of the radius: each unordered pair of pixels once."""
    return [
        (dy, dx)
        for dy in range(radius)
        for dx in range(-radius + 1, radius)
        if (dy > 0 or dx > 0) and dx * dx + dy * dy < radius * radius
    ]


def irn_affinity_labels(image: np.ndarray, cams: np.ndarray, tags: list[int]) -> np.ndarray:
    small, maps = _work_inputs(image, cams, len(tags), 320)
    sure = {
        bg: cam_crf_labels(small, maps, tags, CamCRFConfig(bg_power=0, bg_score=bg, confidence=0))
        for bg in (0.30, 0.05)
    }
    return np.where(sure[0.30] != 0, sure[0.30], np.where(sure[0.05] == 0, 0, IGNORE)).astype(
        np.uint8
    )


def prepare(root: Path, items: list[dict], model_uri: str) -> dict:
    """item id -> tags, default CAMs, frozen features at LEVELS and stride-8 affinity labels."""
    model, model_cfg, classes = load_classifier(model_uri)
    model.eval()
    prior = load_prior(model.backbone, model_cfg.backbone, list(classes))
    cfg, out = CamConfig(), {}
    for it in items:
        record: dict = {"tags": it["tag_ids"]}
        if it["tag_ids"]:
            image = read_rgb(root, it)
            cams, _ = compute_cams(model, [image], [it["tag_ids"]], cfg, prior=prior)
            h, w = working_size(*image.shape[:2], cfg)
            x = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            with torch.inference_mode():
                levels = model.backbone.forward_levels(
                    normalize(torch.from_numpy(x[None]), model.input_stats)
                )
            feats = [levels[i][0].half() for i in LEVELS]
            h8, w8 = feats[0].shape[-2:]
            labels = irn_affinity_labels(image, cams[0], it["tag_ids"])
            record |= {
                "cam": cams[0],
                "feats": feats,
                "lab8": cv2.resize(labels, (w8, h8), interpolation=cv2.INTER_NEAREST),
            }
        out[it["id"]] = record
    return out


class AffinityHead(nn.Module):
    def __init__(self, channels: tuple[int, ...], width: int = 64, dim: int = 128) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU())
            for c in channels
        )
        self.out = nn.Conv2d(width * len(channels), dim, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        parts = [
            F.interpolate(p(f[None].float()), size, mode="bilinear", align_corners=False)
            for p, f in zip(self.proj, feats, strict=True)
        ]
        return self.out(torch.cat(parts, 1))[0]


def pair_affinities(emb: torch.Tensor, offsets, radius: int, labels: torch.Tensor | None = None):
    """(n_offsets, H, W) affinity of each pixel with its partner at each offset (and, given
    labels, both pixels' labels; IGNORE where the partner is off the map)."""
    _, h, w = emb.shape
    padded = F.pad(emb, (radius, radius, 0, radius))
    partner = torch.stack(
        [padded[:, dy : dy + h, radius + dx : radius + dx + w] for dy, dx in offsets]
    )
    aff = torch.exp(-(emb[None] - partner).abs().mean(1))
    if labels is None:
        return aff
    lp = F.pad(labels, (radius, radius, 0, radius), value=IGNORE)
    other = torch.stack([lp[dy : dy + h, radius + dx : radius + dx + w] for dy, dx in offsets])
    return aff, labels[None].expand_as(other), other


def train_head(cache: dict, offsets, radius: int, epochs: int) -> AffinityHead:
    """PSA's loss: background pairs / 4 + foreground pairs / 4 + pairs across labels / 2."""
    torch.manual_seed(0)
    first = next(r for r in cache.values() if r["tags"])
    head = AffinityHead(tuple(f.shape[0] for f in first["feats"]))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    ids = [k for k, r in cache.items() if r["tags"]]
    for epoch in range(epochs):
        total = 0.0
        for i in np.random.RandomState(epoch).permutation(len(ids)):
            record = cache[ids[i]]
            labels = torch.from_numpy(record["lab8"].astype(np.int64))
            aff, a, b = pair_affinities(head(record["feats"]), offsets, radius, labels)
            valid = (a != IGNORE) & (b != IGNORE)
            same = valid & (a == b)
            pos, neg = -torch.log(aff + 1e-5), -torch.log(1 + 1e-5 - aff)

            def mean(v, m):
                return (v * m).sum() / m.sum().clamp_min(1)

            loss = mean(pos, same & (a == 0)) / 4 + mean(pos, same & (a != 0)) / 4
            loss = loss + mean(neg, valid & (a != b)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"affinity epoch {epoch}: loss {total / len(ids):.4f}", flush=True)
    return head


def random_walk(aff: np.ndarray, offsets, maps: np.ndarray, beta: float, steps: int) -> np.ndarray:
    """maps (K, H, W) walked `steps` times along the affinities (n_offsets, H, W) ** beta."""
    k, h, w = maps.shape
    n = h * w
    index = np.arange(n).reshape(h, w)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n)]
    for o, (dy, dx) in enumerate(offsets):
        a = index[: h - dy, max(0, -dx) : w - max(0, dx)].ravel()
        b = index[dy:, max(0, dx) : w - max(0, -dx)].ravel()
        weight = aff[o, : h - dy, max(0, -dx) : w - max(0, dx)].ravel() ** beta
        rows += [a, b]
        cols += [b, a]
        vals += [weight, weight]
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    step = sp.csr_matrix(matrix.multiply(1.0 / np.asarray(matrix.sum(0)).ravel()[None]).T)
    v = maps.reshape(k, n).T
    for _ in range(steps):
        v = step @ v
    return v.T.reshape(k, h, w).astype(np.float32)


def resized(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])


def label_three_ways(image, record, head, offsets, args) -> dict[str, np.ndarray]:
    tags, cams = record["tags"], record["cam"]
    with torch.no_grad():
        emb = head(record["feats"])
        aff = pair_affinities(emb, offsets, args.radius).numpy()
    walked = random_walk(aff, offsets, resized(cams, *emb.shape[-2:]), args.beta, 2**args.logt)
    small, _ = _work_inputs(image, cams, len(tags), 320)
    walked = resized(walked, *small.shape[:2])
    scored = np.concatenate(
        [np.full((1, *small.shape[:2]), args.bg, np.float32), walked / max(walked.max(), 1e-6)]
    )
    peaks = np.maximum(walked.reshape(len(tags), -1).max(1), 1e-6)[:, None, None]
    walk_crf = cam_crf_labels(small, np.clip(walked / peaks, 0, 1), tags, CamCRFConfig())
    irn = np.array([0, *tags], np.uint8)[scored.argmax(0)]
    default = label_image(image, cams, tags, ImageLabelConfig())
    return dict(zip(WAYS, (default, irn, walk_crf), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default=os.environ.get("WSSS_SAMPLE_DIR", "../shared/data/dev"))
    ap.add_argument("--model", required=True, help="classifier checkpoint (frozen Lite0)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--radius", type=int, default=5, help="PSA: 5 at stride 8")
    ap.add_argument("--beta", type=float, default=8.0, help="PSA: 8")
    ap.add_argument("--logt", type=int, default=8, help="PSA: 8 (256 steps)")
    ap.add_argument("--bg", type=float, default=0.25, help="IRN's background threshold")
    args = ap.parse_args()
    root = Path(args.collection)
    items = sorted(load_items(root), key=lambda it: it["id"])
    offsets = pair_offsets(args.radius)
    started = time.perf_counter()
    cache = prepare(root, items, args.model)
    print(f"CAMs, features, affinity labels: {time.perf_counter() - started:.0f} s")
    head = train_head(cache, offsets, args.radius, args.epochs)
    totals = {name: [0, 0] for name in WAYS}  # confusion matrices of the even / odd half
    for n, it in enumerate(items):
        image = read_rgb(root, it)
        gt = cv2.imread(str(root / "gt" / f"{it['id']}.png"), cv2.IMREAD_GRAYSCALE)
        if it["tag_ids"]:
            labels = label_three_ways(image, cache[it["id"]], head, offsets, args)
        else:
            labels = dict.fromkeys(WAYS, np.zeros(gt.shape, np.uint8))
        for name, lab in labels.items():
            if lab.shape != gt.shape:
                lab = cv2.resize(lab, gt.shape[::-1], interpolation=cv2.INTER_NEAREST)
            totals[name][n % 2] = totals[name][n % 2] + confusion(gt, lab)
    for name, (even, odd) in totals.items():
        miou, iou = scores(even + odd)
        horse, person = (100 * iou[VOC_CLASSES.index(c)] for c in ("horse", "person"))
        print(f"| {name} | {100 * miou:.1f} ({100 * scores(even)[0]:.1f} / "
              f"{100 * scores(odd)[0]:.1f}) | {horse:.1f} | {person:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
