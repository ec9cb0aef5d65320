"""Class activation maps and class scores from a CamClassifier (torch; no Ray, no I/O).

Images of any size are resized to a fixed short side (aspect kept, both sides rounded to a
multiple of ``size_bucket``), so that images of similar shape (not only the frames of one video)
end up the same size and run through the network together. Maps from several scales and the
horizontal flip are brought to the scale-1 feature resolution and averaged. With
``stochastic_passes`` the maps are a FickleNet-style ensemble (Lee et al., CVPR 2019): the class
head runs that many times on the features with a random subset of hidden units dropped, and the
ReLU'd maps are averaged, so regions that only some feature subsets call the class (the less
discriminative parts of an object) join the map.

With a ``PriorHead`` (the ImageNet head folded onto the label space; frozen ImageNet backbones
only) each tag that has ImageNet classes gets the mean of its learned map and its prior map, and
its score is the larger of the learned and the prior probability (``imagenet_prior``).

With ``layer_cam`` (the default) each tag's map is then averaged with its stride-16 LayerCAM
(pipeline/models/layer_cam.py), so the maps come at the stride-16 grid.

`appearance_features` gives the backbone's stride-8 features of video frames, for the video
cut's appearance model (pipeline/video/appearance.py).

A classifier trained with adversarial erasing (``classifier.erasing_rounds``) carries one extra
head per erasing round; each tag's map is then the pixelwise max of the first head's map (fused
with the prior as above) and the extra heads' peak-normalised maps: the union of the regions the
rounds mined (Wei et al., CVPR 2017). Scores stay the first head's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from itertools import pairwise

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cam_config import CamConfig
from pipeline.models.classifier import CamClassifier, normalize
from pipeline.models.erasing import merge_round_maps
from pipeline.models.imagenet_prior import PriorHead
from pipeline.models.layer_cam import LEVEL as LAYER_CAM_LEVEL
from pipeline.models.layer_cam import fuse_with_cams, layer_cam_maps, peak_normalised

APPEARANCE_LEVEL = 1  # forward_levels' index of the stride-8 features (video appearance model)
LAST_LEVEL = -1  # capture key of the backbone's output (forward_levels' last entry)
PIXEL_LEVELS = (APPEARANCE_LEVEL, LAYER_CAM_LEVEL, LAST_LEVEL)  # the pixel head's input levels


def working_size(height: int, width: int, cfg: CamConfig, scale: float = 1.0) -> tuple[int, int]:
    """(h, w) the image is resized to: short side input_size * scale, aspect kept."""
    factor = cfg.input_size / min(height, width)
    factor = min(factor, cfg.max_long_side / max(height, width)) * scale
    return max(1, round(height * factor)), max(1, round(width * factor))


def bucketed(image: np.ndarray, cfg: CamConfig) -> np.ndarray:
    """HxWx3 uint8 -> the image at its scale-1 working size with both sides rounded to a multiple
    of cfg.size_bucket (unchanged when size_bucket is 0), so similar shapes share one batch."""
    if not cfg.size_bucket:
        return image
    step = cfg.size_bucket
    h, w = (max(step, round(side / step) * step) for side in working_size(*image.shape[:2], cfg))
    if (h, w) == image.shape[:2]:
        return image
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _feature_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return -(-size[0] // stride), -(-size[1] // stride)


def _resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)


def _pass_masks(shape: tuple[int, ...], device, cfg: CamConfig) -> list[torch.Tensor]:
    """The stochastic passes' (D, h, w) float masks: 0 for a dropped hidden unit, 1 / keep for a
    kept one. Pass i draws from seed and i, so an image's maps do not depend on which images it
    was batched with, and every head and call sees the same masks for one shape."""
    keep = 1.0 - cfg.stochastic_dropout
    masks = []
    for index in range(cfg.stochastic_passes):
        generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + index)
        kept = torch.rand(shape, generator=generator, device=device) < keep
        masks.append(kept.float() / keep)
    return masks


def _stochastic_maps(
    heads: list, features: torch.Tensor, masks: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Backbone features (B, D, h, w) -> per 1x1 head its ReLU'd maps (B, C, h, w) averaged over
    random hidden-unit subsets (masks from _pass_masks, shared by the batch). Each pass masks the
    features once for all heads: the masking, not the 1x1 heads, is most of the pass's cost."""
    totals: list[torch.Tensor | None] = [None] * len(heads)
    for mask in masks:
        masked = features * mask
        for index, head in enumerate(heads):
            totals[index] = _add(totals[index], F.relu(head(masked)))
    return [total / len(masks) for total in totals]


def _heads_maps(
    heads: list,
    features: torch.Tensor,
    cfg: CamConfig,
    size: tuple[int, int],
    masks: dict,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(raw output (B, C, h, w) of the first head, per head its ReLU'd maps at `size`: the
    stochastic ensemble, or the raw output itself when stochastic passes are off). masks: the
    caller's cache of _pass_masks by feature shape, so a call's batches draw them once."""
    raw = heads[0](features)
    if not cfg.stochastic_passes:
        maps = [F.relu(raw), *(F.relu(head(features)) for head in heads[1:])]
    else:
        shape = tuple(features.shape[1:])
        if shape not in masks:
            masks[shape] = _pass_masks(shape, features.device, cfg)
        maps = _stochastic_maps(heads, features, masks[shape])
    return raw, [_resize(m, size) for m in maps]


def _unflip(x: torch.Tensor, flip: bool) -> torch.Tensor:
    """Sum each image's result with its flipped twin's (maps flipped back) when flip is on."""
    if not flip:
        return x
    half = len(x) // 2
    second = x[half:].flip(-1) if x.ndim == 4 else x[half:]
    return x[:half] + second


def _add(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value


def _normalized(model: CamClassifier, images: np.ndarray, device: str) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float normalised for the model's backbone."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return normalize(x, model.input_stats)


def _scaled_inputs(x: torch.Tensor, cfg: CamConfig, scale: float) -> torch.Tensor:
    """Normalised images (B, 3, H, W) at their working size for scale, with the flipped twins
    appended when cfg.flip (2B rows)."""
    scaled = _resize(x, working_size(x.shape[2], x.shape[3], cfg, scale))
    return torch.cat([scaled, scaled.flip(-1)]) if cfg.flip else scaled


@torch.inference_mode()
def _maps_and_logits(
    model: CamClassifier,
    images: np.ndarray,
    cfg: CamConfig,
    device: str,
    prior: PriorHead | None = None,
    masks: dict | None = None,
    capture: dict[int, list] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, list]:
    """images (B, H, W, 3) uint8 of one size -> ReLU'd maps (B, C, h, w) summed over
    scales/flips and logits (B, C) averaged over them; h, w = the scale-1 feature size. With a
    prior: its maps (B, C, h, w) summed the same way and its probabilities (B, C) averaged.
    Last, per extra (erasing-round) head of the model, its maps (B, C, h, w) summed alike.
    masks: a cache of the stochastic passes' masks shared by the calls of one compute_cams.
    capture: {level: list}: each list gets the scale-1 pass's features at that forward_levels
    level (B or 2B with the flips, C, h, w) appended (the LayerCAM's stride-16 features, the
    appearance model's stride-8 ones; LAST_LEVEL: the backbone's output); None or empty: nothing
    kept."""
    masks = {} if masks is None else masks
    x = _normalized(model, images, device)
    base = working_size(images.shape[1], images.shape[2], cfg)
    out_size = _feature_size(base, model.backbone.output_stride)
    heads = [model.classifier, *([prior.classifier] if prior is not None else [])]
    heads += list(model.extra_heads)  # no training dropout: the heads are applied directly
    sums: list[torch.Tensor | None] = [None] * len(heads)
    logits_sum = prior_probs = None
    runs = 0
    for scale in cfg.scales:
        inputs = _scaled_inputs(x, cfg, scale)
        if capture and scale == 1.0:
            features = _forward_capturing(model.backbone, inputs, capture)
        else:
            features = model.backbone(inputs)
        raw, maps = _heads_maps(heads, features, cfg, out_size, masks)
        logits_sum = _add(logits_sum, _unflip(model.pool(raw), cfg.flip))
        sums = [_add(total, _unflip(m, cfg.flip)) for total, m in zip(sums, maps, strict=True)]
        if prior is not None:
            probs = _unflip(prior.probabilities(features.mean(dim=(2, 3))), cfg.flip)
            prior_probs = _add(prior_probs, probs)
        runs += 2 if cfg.flip else 1
    if prior_probs is not None:
        prior_probs = prior_probs / runs
    prior_maps = sums[1] if prior is not None else None
    extra_maps = sums[2:] if prior is not None else sums[1:]
    return sums[0], logits_sum / runs, prior_maps, prior_probs, extra_maps


def _forward_capturing(backbone, inputs: torch.Tensor, capture: dict[int, list]) -> torch.Tensor:
    """backbone(inputs), appending the features at each level of capture to its list (at
    LAST_LEVEL: the output itself)."""
    levels = sorted(level for level in capture if level != LAST_LEVEL)
    if levels:
        x = backbone.forward_to_level(inputs, levels[0])
        capture[levels[0]].append(x)
        for start, stop in pairwise(levels):
            x = backbone.forward_between_levels(x, start, stop)
            capture[stop].append(x)
        out = backbone.forward_from_level(x, levels[-1])
    else:
        out = backbone(inputs)
    if LAST_LEVEL in capture:
        capture[LAST_LEVEL].append(out)
    return out


GPU_IMAGES_PER_PASS, CPU_IMAGES_PER_PASS = 8, 2


def images_per_pass(cfg: CamConfig, device: str) -> int:
    """cfg.batch_size, 'auto' resolved for the device the maps are computed on: a GPU wants full
    batches; a CPU computes 2 images per pass (4 with the flips) in a third less time than 8,
    with half the peak memory: the larger activations fall out of the caches (docs/cluster.md)."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    return CPU_IMAGES_PER_PASS if str(device) == "cpu" else GPU_IMAGES_PER_PASS


def _batches(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of images grouped by shape, in chunks of at most batch_size."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape].append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")


def compute_round_cams(
    model: CamClassifier,
    images: list[np.ndarray],
    tag_ids: list[list[int]],
    cfg: CamConfig,
    device: str = "cpu",
    prior: PriorHead | None = None,
) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """compute_cams before the erasing rounds merge: (rounds, scores) where rounds[i] is a list
    of 1 + len(model.extra_heads) K x h x w float32 maps in [0, 1], the first head's (fused with
    the prior) first, then each extra head's, each peak-normalised. Arguments and scores as in
    compute_cams."""
    rounds, scores, _ = _round_cams(model, images, tag_ids, cfg, device, prior, layer_cam=False)
    return rounds, scores


def _round_cams(
    model: CamClassifier,
    images: list[np.ndarray],
    tag_ids: list[list[int]],
    cfg: CamConfig,
    device: str,
    prior: PriorHead | None,
    layer_cam: bool,
    appearance: list | None = None,
    pixel: list | None = None,
) -> tuple[list[list[np.ndarray]], list[np.ndarray], list[torch.Tensor] | None]:
    """compute_round_cams' (rounds, scores) and, with layer_cam, each image's (K, h16, w16)
    LayerCAM maps from the same forward pass's stride-16 features (None without). appearance: a
    list that gets each image's appearance_features appended, from the same pass where it can;
    pixel: likewise with pixel_features."""
    if len(images) != len(tag_ids):
        raise ValueError(f"{len(images)} images but {len(tag_ids)} tag lists")
    model.eval()
    for image in images:
        _check_image(image)
    images = [bucketed(image, cfg) for image in images]
    rounds: list[list[np.ndarray] | None] = [None] * len(images)
    scores: list[np.ndarray | None] = [None] * len(images)
    masks: dict = {}  # the stochastic passes' masks, drawn once per feature shape
    layers: list[torch.Tensor | None] | None = [None] * len(images) if layer_cam else None
    shared = appearance is not None and 1.0 in cfg.scales
    pixel_shared = pixel is not None and 1.0 in cfg.scales
    pixel_out: list[np.ndarray | None] = [None] * len(images)
    frames: list[np.ndarray | None] = [None] * len(images)
    for indices in _batches(images, images_per_pass(cfg, device)):
        stack = np.stack([images[i] for i in indices])
        capture: dict[int, list] = {}
        if layer_cam:
            capture[LAYER_CAM_LEVEL] = []
        if shared:
            capture[APPEARANCE_LEVEL] = []
        if pixel_shared:
            for level in PIXEL_LEVELS:
                capture.setdefault(level, [])
        maps, logits, prior_maps, prior_probs, extra = _maps_and_logits(
            model, stack, cfg, device, prior, masks, capture
        )
        stride16 = capture.get(LAYER_CAM_LEVEL) if layer_cam else None
        if pixel is not None:
            found = [capture[level][0] for level in PIXEL_LEVELS] if pixel_shared else None
            for index, feature in zip(
                indices, _pixel_batch(model, stack, cfg, device, found), strict=True
            ):
                pixel_out[index] = feature
        if appearance is not None:
            found = capture[APPEARANCE_LEVEL][0][: len(indices)] if shared else None
            for index, feature in zip(
                indices, _appearance_batch(model, stack, cfg, device, found), strict=True
            ):
                frames[index] = feature
        for index in indices:
            _check_tags(tag_ids[index], maps.shape[1])
        if layers is not None:
            channels = [[t - 1 for t in tag_ids[i]] for i in indices]
            batch = _layer_maps(model, stack, channels, cfg, device, prior, stride16)
            for index, layer in zip(indices, batch, strict=True):
                layers[index] = layer
        for row, index in enumerate(indices):
            channels = torch.tensor([t - 1 for t in tag_ids[index]], dtype=torch.long).to(
                maps.device
            )
            selected = peak_normalised(maps[row].index_select(0, channels))
            score = torch.sigmoid(logits[row, channels])
            if prior is not None:
                has = prior.has.index_select(0, channels).view(-1, 1, 1)
                own = peak_normalised(prior_maps[row].index_select(0, channels))
                selected = torch.where(has, peak_normalised(selected + own), selected)
                score = torch.maximum(score, prior_probs[row, channels])
            extras = [peak_normalised(e[row].index_select(0, channels)) for e in extra]
            rounds[index] = [m.float().cpu().numpy() for m in (selected, *extras)]
            scores[index] = score.float().cpu().numpy()
    if appearance is not None:
        appearance.extend(frames)
    if pixel is not None:
        pixel.extend(pixel_out)
    return rounds, scores, layers  # type: ignore[return-value]


def _layer_maps(
    model: CamClassifier,
    stack: np.ndarray,
    channels: list[list[int]],
    cfg: CamConfig,
    device: str,
    prior: PriorHead | None,
    stride16: list | None,
) -> list[torch.Tensor]:
    """The batch's LayerCAM maps from the scale-1 pass's stride-16 features (computed here when
    the scales leave 1.0 out)."""
    if not stride16:
        with torch.inference_mode():
            inputs = _scaled_inputs(_normalized(model, stack, device), cfg, 1.0)
            stride16 = [model.backbone.forward_to_level(inputs, LAYER_CAM_LEVEL)]
    head, has = (prior.classifier, prior.has) if prior is not None else (None, None)
    return layer_cam_maps(model, head, has, stride16[0], channels, cfg.flip)


def compute_cams(
    model: CamClassifier,
    images: list[np.ndarray],
    tag_ids: list[list[int]],
    cfg: CamConfig,
    device: str = "cpu",
    prior: PriorHead | None = None,
    appearance: list | None = None,
    pixel: list | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """CAMs of each image's tags (fused with the ImageNet prior where one is given, merged with
    the erasing rounds' maps where the model has extra heads).

    images: N arrays HxWx3 uint8 RGB (any sizes); tag_ids: per image the label-space indices (1..C,
    0 = background is not a tag) of its tags.
    Returns (cams, scores): cams[i] is K x h x w float32 in [0, 1] with K = len(tag_ids[i]), each
    map ReLU'd and divided by its own max (all zeros when the class never fires); h, w = the scale-1
    feature resolution (short side about input_size / output_stride, aspect kept; callers resize).
    With extra heads, each map is the pixelwise max of the first head's and the extra heads'
    peak-normalised maps; with cfg.layer_cam, each map averaged with its stride-16 LayerCAM and
    h, w the stride-16 grid instead. scores[i] is (K,) float32: the sigmoid probability of each
    tag (with a prior, the larger of it and the prior probability). No tags: a 0 x h x w array
    and an empty score array. appearance: a list that gets each image's appearance_features
    appended (taken from the CAMs' own scale-1 pass unless the scales leave 1.0 out); pixel:
    likewise with each image's pixel_features.
    """
    rounds, scores, layers = _round_cams(
        model, images, tag_ids, cfg, device, prior, cfg.layer_cam, appearance, pixel
    )
    cams = [merge_round_maps(maps) for maps in rounds]
    if layers is not None:
        cams = [
            fuse_with_cams(torch.from_numpy(cam).to(layer.device), layer).cpu().numpy()
            for cam, layer in zip(cams, layers, strict=True)
        ]
    return cams, scores


@torch.inference_mode()
def appearance_features(
    model: CamClassifier, images: list[np.ndarray], cfg: CamConfig, device: str = "cpu"
) -> list[np.ndarray]:
    """images: N arrays HxWx3 uint8 RGB (any sizes) -> N arrays C x h x w float16: the backbone's
    stride-8 features of each image at its scale-1 working size (no flip, no dropout)."""
    return _per_image(
        model, images, cfg, device, lambda stack: _appearance_batch(model, stack, cfg, device)
    )


def _per_image(model, images, cfg: CamConfig, device: str, batch_fn) -> list[np.ndarray]:
    """batch_fn (a same-size (B, H, W, 3) uint8 stack -> B arrays) applied to the images in
    batches of images_per_pass, each image checked and bucketed first; results in input order."""
    model.eval()
    for image in images:
        _check_image(image)
    images = [bucketed(image, cfg) for image in images]
    out: list[np.ndarray | None] = [None] * len(images)
    for indices in _batches(images, images_per_pass(cfg, device)):
        results = batch_fn(np.stack([images[i] for i in indices]))
        for index, result in zip(indices, results, strict=True):
            out[index] = result
    return out  # type: ignore[return-value]


@torch.inference_mode()
def _appearance_batch(
    model: CamClassifier,
    stack: np.ndarray,
    cfg: CamConfig,
    device: str,
    found: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """appearance_features of a same-size batch: found (the CAM pass's own stride-8 features of
    the unflipped images) when given, else a forward pass of its own."""
    if found is None:
        x = _normalized(model, stack, device)
        x = _resize(x, working_size(x.shape[2], x.shape[3], cfg))
        found = model.backbone.forward_to_level(x, APPEARANCE_LEVEL)
    return [f.half().cpu().numpy() for f in found]


def pixel_features(
    model: CamClassifier, images: list[np.ndarray], cfg: CamConfig, device: str = "cpu"
) -> list[np.ndarray]:
    """images: N arrays HxWx3 uint8 RGB (any sizes) -> N arrays C x h x w float16 on the stride-16
    grid of each image's scale-1 working size: the stride-8 features average-pooled, the stride-16
    ones, and the last level upsampled, concatenated (C = the backbone's level_channels from
    stride 8 on), averaged with the flipped image's when cfg.flip. The pixel head's input."""
    return _per_image(
        model, images, cfg, device, lambda stack: _pixel_batch(model, stack, cfg, device)
    )


@torch.inference_mode()
def _pixel_batch(
    model: CamClassifier,
    stack: np.ndarray,
    cfg: CamConfig,
    device: str,
    found: list[torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """pixel_features of a same-size batch: from found (the CAM pass's own PIXEL_LEVELS features,
    flipped twins included when cfg.flip) when given, else from a forward pass of its own."""
    if found is None:
        inputs = _scaled_inputs(_normalized(model, stack, device), cfg, 1.0)
        found = model.backbone.forward_levels(inputs)[APPEARANCE_LEVEL:]
    height, width = working_size(stack.shape[1], stack.shape[2], cfg)
    grid = _feature_size((height, width), 16)
    pooled = [F.adaptive_avg_pool2d(found[0], grid)]
    pooled += [F.interpolate(lv, size=grid, mode="bilinear", align_corners=False)
               for lv in found[1:]]  # fmt: skip
    stacked = _unflip(torch.cat(pooled, 1), cfg.flip)
    stacked = stacked / 2 if cfg.flip else stacked
    return [feature.half().cpu().numpy() for feature in stacked]


def _check_tags(tags: list[int], num_classes: int) -> None:
    bad = [t for t in tags if not 1 <= t <= num_classes]
    if bad:
        raise ValueError(f"tag ids {bad} outside 1..{num_classes} (0 = background is not a tag)")


def class_scores(
    model: CamClassifier, images: list[np.ndarray], cfg: CamConfig, device: str = "cpu"
) -> np.ndarray:
    """N x C float32 sigmoid probabilities of ALL foreground classes (column c = label c + 1)."""
    model.eval()
    out = np.zeros((len(images), model.cfg.num_classes), dtype=np.float32)
    for image in images:
        _check_image(image)
    images = [bucketed(image, cfg) for image in images]
    logits_only = replace(cfg, stochastic_passes=0)  # the passes change the maps, not the logits
    for indices in _batches(images, images_per_pass(cfg, device)):
        _, logits, _, _, _ = _maps_and_logits(
            model, np.stack([images[i] for i in indices]), logits_only, device
        )
        out[indices] = torch.sigmoid(logits).float().cpu().numpy()
    return out
