"""A collection-level pixel classifier for the image route's second pass (torch; no Ray, no I/O).

A CAM is fitted per image from image-level tags, so it cannot learn that a dark suit is as much a
person as the face above it. A linear softmax over background + the classes, fitted on the
stride-16 cells that a first pass labelled cleanly across the whole collection, can: the segmenter
learns the same way, and IRN / PSA train their second stage on first-pass labels too. Its maps,
averaged into each image's CAMs, give the second pass's labeller (docs/quality.md, "Pixel head").

Every function takes numpy arrays; features are `pixel_features`' C x h x w float16 maps, label
masks H x W uint8 class indices with 255 = ignore, tags label-space indices 1..C (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.schema import BACKGROUND

LEARNING_RATE = 0.01  # Adam, full batch; the fit converges well within the default steps


@dataclass(frozen=True)
class PixelHead:
    """A fitted head: logits = weight @ ((f - mean) / std) + bias for each cell's feature f.

    weight (L, C) float32 and bias (L,) over the L = num_classes + 1 labels (0 = background);
    mean, std (C,) float32; seen (L,) bool: the labels it had samples of from enough images (the
    others' maps are not used)."""

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seen: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ("weight", "bias", "mean", "std", "seen")}

    @classmethod
    def from_arrays(cls, arrays) -> PixelHead:
        head = cls(**{name: np.asarray(arrays[name]) for name in cls.__dataclass_fields__})
        labels, channels = head.weight.shape
        if head.bias.shape != (labels,) or head.seen.shape != (labels,):
            raise ValueError(f"pixel head: bias/seen must have {labels} entries")
        if head.mean.shape != (channels,) or head.std.shape != (channels,):
            raise ValueError(f"pixel head: mean/std must have {channels} entries")
        return head


@dataclass(frozen=True)
class CellSamples:
    """Training cells: features (N, C) float16, labels (N,) int64, allowed (N, L) bool (background
    and the cell's image's tags: the softmax competes among them only, as at inference), image
    (N,) int64: which image each cell is from (concat numbers its parts' images)."""

    features: np.ndarray
    labels: np.ndarray
    allowed: np.ndarray
    image: np.ndarray

    @classmethod
    def concat(cls, parts: list[CellSamples]) -> CellSamples:
        """One image's samples per part -> all of them, part i's cells from image i."""
        joined = [
            np.concatenate([getattr(p, k) for p in parts])
            for k in ("features", "labels", "allowed")
        ]
        images = [np.full(len(p.labels), i, np.int64) for i, p in enumerate(parts)]
        return cls(*joined, np.concatenate(images))

    def images_per_label(self, num_labels: int) -> np.ndarray:
        """(L,) int64: how many images have cells of each label."""
        pairs = np.unique(np.stack([self.image, self.labels]), axis=1)
        return np.bincount(pairs[1], minlength=num_labels)


def cell_samples(
    features: np.ndarray,
    mask: np.ndarray,
    tag_ids: list[int],
    num_labels: int,
    purity: float,
    max_cells: int,
    seed: int = 0,
) -> CellSamples:
    """One image's training cells: features C x h x w, mask H x W uint8 (255 = ignore) -> the cells
    one label covers at least `purity` of (ignore pixels count against it), at most max_cells of
    them (drawn at random with seed, every label keeping its share)."""
    channels, h, w = features.shape
    onehot = torch.from_numpy(
        np.stack([mask == label for label in range(num_labels)]).astype(np.float32)
    )
    shares = F.adaptive_avg_pool2d(onehot[None], (h, w))[0].reshape(num_labels, -1)
    best, labels = shares.max(0)
    keep = np.flatnonzero((best >= purity).numpy())
    if len(keep) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_cells, replace=False))
    allowed = np.zeros(num_labels, bool)
    allowed[[BACKGROUND, *tag_ids]] = True
    return CellSamples(
        features.reshape(channels, -1).T[keep].astype(np.float16),
        labels.numpy()[keep].astype(np.int64),
        np.repeat(allowed[None], len(keep), 0),
        np.zeros(len(keep), np.int64),
    )


def fit_pixel_head(
    samples: CellSamples, weight_decay: float, steps: int, min_images: int = 1, seed: int = 0
) -> PixelHead:
    """Class-balanced (inverse square-root frequency) softmax over each cell's allowed labels,
    L2 on the weights, full-batch Adam; samples must hold background and at least one class.
    The head's `seen` labels are those with cells from at least min_images images: a row fitted
    on a handful of images reproduces them rather than the class (docs/quality.md)."""
    if len(samples.labels) == 0 or len(np.unique(samples.labels)) < 2:
        raise ValueError("the pixel head needs cells of background and at least one class")
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(samples.features).float()
    mean, std = x.mean(0), x.std(0) + 1e-3
    x = (x - mean) / std
    y = torch.from_numpy(samples.labels)
    allowed = torch.from_numpy(samples.allowed)
    num_labels = allowed.shape[1]
    counts = torch.bincount(y, minlength=num_labels).float()
    balance = torch.where(
        counts > 0, (counts.sum() / (num_labels * counts.clamp(min=1))).sqrt(), 0.0
    )
    linear = torch.nn.Linear(x.shape[1], num_labels)
    bound = 1.0 / x.shape[1] ** 0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.zero_()
    optimiser = torch.optim.Adam(linear.parameters(), lr=LEARNING_RATE)
    for _ in range(steps):
        logits = linear(x).masked_fill(~allowed, -1e4)
        loss = F.cross_entropy(logits, y, weight=balance)
        loss = loss + weight_decay * linear.weight.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return PixelHead(
        linear.weight.detach().numpy().copy(),
        linear.bias.detach().numpy().copy(),
        mean.numpy(),
        std.numpy(),
        (counts > 0).numpy() & (samples.images_per_label(num_labels) >= min_images),
    )


def head_maps(head: PixelHead, features: np.ndarray, tag_ids: list[int]) -> np.ndarray:
    """features C x h x w -> K x h x w float32 in [0, 1]: each tag's probability in a softmax over
    background + the image's tags (K = len(tag_ids))."""
    channels, h, w = features.shape
    x = (features.reshape(channels, -1).T.astype(np.float32) - head.mean) / head.std
    labels = [BACKGROUND, *tag_ids]
    logits = x @ head.weight[labels].T + head.bias[labels]
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    return probs[:, 1:].T.reshape(len(tag_ids), h, w).astype(np.float32)


def mix_into_cams(
    cams: np.ndarray, maps: np.ndarray, tag_ids: list[int], seen: np.ndarray, share: float
) -> np.ndarray:
    """cams K x h x w in [0, 1], maps K x h' x w' (head_maps) -> K x h x w: (1 - share) * cam +
    share * map (resized to the CAM grid) for the tags the head has seen; the others unchanged."""
    out = cams.astype(np.float32, copy=True)
    if not len(tag_ids):
        return out
    resized = F.interpolate(
        torch.from_numpy(maps)[None], size=cams.shape[1:], mode="bilinear", align_corners=False
    )[0].numpy()
    for k, tag in enumerate(tag_ids):
        if seen[tag]:
            out[k] = (1.0 - share) * out[k] + share * resized[k]
    return out
