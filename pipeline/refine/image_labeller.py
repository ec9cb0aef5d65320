"""Image pseudo-labels from tags, CAMs and class-agnostic cues: one entry point, three methods.

- ``cam_crf`` (default): CAMs against a background score (1 - max CAM) ** p, dense CRF, unsure
  pixels -> ignore (IRN's recipe; needs CAMs that localise, i.e. a pretrained backbone). p is
  set per image from Otsu's threshold of the max CAM by default, or fixed (IRN: 4). GrabCut then
  grows the foreground over the colour-alike parts the CAM missed.
- ``objectness``: saliency + GrabCut + CRF decide where, the CAM decides which tag.
- ``dsrg``: seeded region growing from confident saliency/CAM pixels.

All methods run at ``work_side`` and the label map is upsampled (nearest) to the source size.
How much the CAM shapes the extent is a knob: ``objectness.cam_weight`` / ``dsrg.cues.cam_weight``
(0 suits a classifier trained from scratch, whose CAMs only pick the tag; raise it for a
pretrained backbone), while ``cam_crf`` trusts the CAM alone. Without a CAM, foreground goes to the
first tag; with one, ``objectness`` gives each connected salient region the tag its CAM supports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.refine.appearance_cut import appearance_cut
from pipeline.refine.crf import CRFConfig, dense_crf
from pipeline.refine.objectness import (
    ObjectnessConfig,
    assign_tags,
    grabcut_prob,
    objectness_labels,
)
from pipeline.refine.region_growing import DSRGConfig, dsrg_labels
from pipeline.refine.saliency import (
    SaliencyConfig,
    centre_prior,
    combine_saliency,
    resize_maps,
    saliency_map,
)
from pipeline.schema import BACKGROUND, IGNORE

METHODS = ("cam_crf", "objectness", "dsrg")
BACKGROUNDS = ("cam", "builtin", "both")
OTSU = "otsu"
OTSU_RANGE = (0.05, 0.95)  # keeps the power finite for flat maps (all 0 or all 1)


@dataclass(frozen=True)
class CamCRFConfig:
    bg_power: float | str = OTSU  # background score (1 - max CAM) ** bg_power (IRN: 4); "otsu":
    # per image, the power whose score crosses the max CAM at its Otsu threshold; 0 = bg_score
    bg_score: float = 0.3  # constant background score the CAMs compete against (bg_power 0)
    confidence: float = 0.6  # CRF posteriors below this become ignore (255)
    no_cam_sigma: float = 0.12  # without a CAM: centre prior width (share of diagonal), ~20% area
    crf: CRFConfig = field(default_factory=CRFConfig)  # dense CRF over background + tags
    background: str = "cam"  # "cam": the score above; "builtin": 1 - the backbone's built-in
    # foreground prior (Saleh et al. 2016); "both": the mean of the two
    grabcut_rounds: int = 2  # GrabCut rounds after the CRF, growing its foreground over the
    # colour-alike pixels a CAM leaves out (legs, heads); 0 = off
    grabcut_sure_fg: float = 0.8  # CAM at or above this, inside the CRF's foreground: sure fg
    grabcut_sure_bg: float = 0.05  # CAM at or below this: sure background (IRN's conf_bg_thres)
    grabcut_band: float = 0.15  # GrabCut grows the CRF's foreground at most this far (share of
    # the image diagonal): pixels farther away are sure background; 0 = no limit
    # with the backbone's stride-8 features: GrabCut as a min-cut on colour models and a feature
    # discriminant, this share of the appearance term the features' (0: OpenCV's GrabCut, colour)
    grabcut_feature_share: float = 0.5

    def __post_init__(self) -> None:
        if self.grabcut_rounds < 0:
            raise ValueError(f"cam_crf.grabcut_rounds must be >= 0, not {self.grabcut_rounds}")
        if not 0 <= self.grabcut_sure_bg < self.grabcut_sure_fg <= 1:
            raise ValueError(
                "cam_crf needs 0 <= grabcut_sure_bg < grabcut_sure_fg <= 1, not "
                f"{self.grabcut_sure_bg} and {self.grabcut_sure_fg}"
            )
        if not 0 <= self.grabcut_feature_share <= 1:
            raise ValueError(
                "cam_crf.grabcut_feature_share must be in [0, 1], not "
                f"{self.grabcut_feature_share}"
            )
        if not 0 <= self.grabcut_band <= 1:
            raise ValueError(f"cam_crf.grabcut_band must be in [0, 1], not {self.grabcut_band}")
        if isinstance(self.bg_power, str) and self.bg_power != OTSU:
            raise ValueError(
                f"cam_crf.bg_power must be a number >= 0 or {OTSU!r}, not {self.bg_power!r}"
            )
        if not isinstance(self.bg_power, str) and self.bg_power < 0:
            raise ValueError(f"cam_crf.bg_power must be >= 0, not {self.bg_power}")
        if self.background not in BACKGROUNDS:
            raise ValueError(
                f"unknown background {self.background!r}; expected one of {BACKGROUNDS}"
            )


@dataclass(frozen=True)
class ImageLabelConfig:
    method: str = "cam_crf"  # "cam_crf" | "objectness" | "dsrg": cam_crf with pretrained CAMs
    # (docs/quality.md; objectness suits a from-scratch classifier whose CAMs do not localise)
    work_side: int = 320  # longer side (px) the methods run at; masks are upsampled after
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)  # colour saliency cue
    cam_crf: CamCRFConfig = field(default_factory=CamCRFConfig)  # settings of "cam_crf"
    objectness: ObjectnessConfig = field(default_factory=ObjectnessConfig)  # of "objectness"
    dsrg: DSRGConfig = field(default_factory=DSRGConfig)  # settings of "dsrg"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown image label method {self.method!r}; expected one of {METHODS}"
            )


def background_score(
    cams: np.ndarray, cfg: CamCRFConfig, prior: np.ndarray | None = None
) -> np.ndarray:
    """KxHxW CAMs in [0, 1] -> HxW float32 background score: (1 - max CAM) ** bg_power, low
    where some class fires (Ahn et al., IRN; the power fixed or, with "otsu", this image's
    ``otsu_power``), or the constant bg_score when bg_power is 0.
    With ``cfg.background`` "builtin" it is 1 - prior (HxW built-in foreground prior in [0, 1]),
    with "both" the mean of the two."""
    if cfg.bg_power != 0 and cams.shape[0] > 0:
        peak = cams.max(axis=0)
        power = otsu_power(peak) if cfg.bg_power == OTSU else cfg.bg_power
        cam_bg = ((1.0 - peak) ** power).astype(np.float32)
    else:
        cam_bg = np.full(cams.shape[1:], cfg.bg_score, np.float32)
    if cfg.background == "cam":
        return cam_bg
    if prior is None:
        raise ValueError(f"background {cfg.background!r} needs the built-in prior map; none given")
    builtin = (1.0 - prior).astype(np.float32)
    return builtin if cfg.background == "builtin" else ((cam_bg + builtin) / 2).astype(np.float32)


def otsu_power(peak: np.ndarray) -> float:
    """HxW max CAM in [0, 1] -> the power p with (1 - t) ** p = t at Otsu's threshold t of its
    histogram, so the background score beats the CAMs below t. A fixed p puts that crossing at
    one CAM level for every image (p = 4: 0.28), which lets a small object's diffuse map spread
    over the scene and cuts a large object's broad map short; Otsu picks each image's own split
    between its low and high CAM values, with no knob."""
    level, _ = cv2.threshold(
        (np.clip(peak, 0.0, 1.0) * 255).astype(np.uint8),
        0,
        255,
        cv2.THRESH_BINARY | cv2.THRESH_OTSU,
    )
    # cv2's level is the last bin of the low class: the split lies half a bin above it
    t = min(max((level + 0.5) / 255.0, OTSU_RANGE[0]), OTSU_RANGE[1])
    return float(np.log(t) / np.log(1.0 - t))


def cam_crf_labels(
    image: np.ndarray,
    cams: np.ndarray,
    tag_ids: list[int],
    cfg: CamCRFConfig,
    prior: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """image HxWx3 uint8 RGB, cams KxHxW float32 in [0, 1], K tag ids (prior: optional HxW
    built-in foreground prior; features: optional C x h x w backbone features for GrabCut) ->
    HxW uint8 labels (0 background, tag id, 255 = ignore where the CRF posterior is below
    ``confidence``)."""
    scores = np.concatenate([background_score(cams, cfg, prior)[None], cams])
    probs = scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-6)
    post = dense_crf(image, probs, cfg.crf)
    labels = np.array([BACKGROUND, *tag_ids], np.uint8)[post.argmax(axis=0)]
    labels[post.max(axis=0) < cfg.confidence] = IGNORE
    if not cfg.grabcut_rounds:
        return labels
    return grabcut_grow(image, cams, labels, tag_ids, cfg, features)


def grabcut_grow(
    image: np.ndarray,
    cams: np.ndarray,
    labels: np.ndarray,
    tag_ids: list[int],
    cfg: CamCRFConfig,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """image HxWx3 uint8 RGB, cams KxHxW float32 in [0, 1], labels HxW uint8 from the CRF (0,
    tag ids, 255 = ignore) -> HxW uint8 labels after GrabCut (Rother et al. 2004). The CRF's
    foreground and background seed the colour models as probable, its foreground's CAM peaks
    (>= grabcut_sure_fg) as sure foreground, CAM <= grabcut_sure_bg as sure background, and so are
    pixels farther than grabcut_band (share of the diagonal) from the CRF's foreground: a small
    object's diffuse CAM leaves almost no pixel under grabcut_sure_bg, and without the band the cut
    floods a uniform scene around it. Pixels the cut adds take the tag of their strongest CAM;
    pixels it drops become background; ignore stays. Deterministic: OpenCV's RNG is seeded per call.
    With features (C x h x w) and grabcut_feature_share > 0, the cut is appearance_cut's instead
    of OpenCV's: the same initialisation, colour models and a feature discriminant."""
    foreground = (labels != BACKGROUND) & (labels != IGNORE)
    peak = cams.max(axis=0)
    prob = np.where(foreground, 0.75, 0.25).astype(np.float32)
    prob[foreground & (peak >= cfg.grabcut_sure_fg)] = 1.0
    prob[peak <= cfg.grabcut_sure_bg] = 0.0
    if cfg.grabcut_band > 0 and foreground.any():
        prob[_distance_from(foreground) > cfg.grabcut_band * float(np.hypot(*labels.shape))] = 0.0
    if features is not None and cfg.grabcut_feature_share > 0:
        share = cfg.grabcut_feature_share
        cut = appearance_cut(image, prob, features, share, cfg.grabcut_rounds)
    else:
        cut = grabcut_prob(image, prob, cfg.grabcut_rounds, side=max(image.shape[:2])) > 0.5
    grown = np.where(cut & foreground, labels, assign_tags(cut, cams, tag_ids))
    grown[labels == IGNORE] = IGNORE
    return grown


def _distance_from(region: np.ndarray) -> np.ndarray:
    """HxW bool -> HxW float32 distance in pixels to the nearest True pixel (OpenCV's 3x3-mask
    estimate of the Euclidean distance: close, and what the band was measured with)."""
    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 3)


def _work_inputs(image: np.ndarray, cam: np.ndarray | None, n_tags: int, side: int):
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if scale < 1 else image
    if cam is None:
        return np.ascontiguousarray(small), None
    if cam.ndim != 3 or cam.shape[0] != n_tags:
        raise ValueError(f"cam has shape {cam.shape}; expected {n_tags} maps, one per tag")
    return np.ascontiguousarray(small), np.clip(resize_maps(cam, h, w), 0.0, 1.0)


def _at(prior: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    return None if prior is None else np.clip(resize_maps(prior[None], height, width)[0], 0, 1)


def _objectness_cue(small: np.ndarray, prior: np.ndarray | None, cfg: ImageLabelConfig):
    source = cfg.objectness.saliency_source if cfg.method == "objectness" else "colour"
    h, w = small.shape[:2]
    colour = None
    if source != "builtin":  # the colour cue is the costly one: skip it when unused
        colour = resize_maps(saliency_map(small, cfg.saliency)[None], h, w)[0]
    return combine_saliency(colour, _at(prior, h, w), source)


def label_image(
    image: np.ndarray,
    cam: np.ndarray | None,
    tag_ids: list[int],
    cfg: ImageLabelConfig,
    prior: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Pseudo-label one image.

    image: HxWx3 uint8 RGB at source resolution. cam: KxhXw float32 in [0, 1] at any resolution,
    one map per entry of ``tag_ids``, or None without classifier evidence. tag_ids: label-space
    indices (>= 1) of the item's tags; empty for a negative image. prior: optional hxw float32
    built-in foreground prior in [0, 1] (pipeline.models.activation_prior) at any resolution,
    needed only by ``cam_crf.background`` / ``objectness.saliency_source`` "builtin" or "both".
    features: optional C x h x w backbone features (pipeline.cam.appearance_features) for the
    cam_crf route's GrabCut step (``cam_crf.grabcut_feature_share``).
    Returns HxW uint8 at source resolution: 0 = background, tag id = that class, 255 = ignore.
    """
    height, width = image.shape[:2]
    if not tag_ids:
        return np.full((height, width), BACKGROUND, np.uint8)
    small, cams = _work_inputs(image, cam, len(tag_ids), cfg.work_side)
    h, w = small.shape[:2]
    if cfg.method == "cam_crf":
        if cams is None:  # no evidence: a centre prior for the first tag, nothing for the rest
            cams = np.zeros((len(tag_ids), h, w), np.float32)
            cams[0] = centre_prior(h, w, cfg.cam_crf.no_cam_sigma)
        labels = cam_crf_labels(small, cams, tag_ids, cfg.cam_crf, _at(prior, h, w), features)
    else:
        sal = _objectness_cue(small, prior, cfg)
        if cfg.method == "objectness":
            labels = objectness_labels(small, sal, cams, tag_ids, cfg.objectness)
        else:
            labels = dsrg_labels(small, sal, cams, tag_ids, cfg.dsrg)
    if (h, w) != (height, width):
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return labels
