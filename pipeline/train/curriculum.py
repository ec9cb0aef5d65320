"""Simple to complex (STC, Wei et al., TPAMI 2017) for the segmenter: train the first epochs on
the simple part of the label set, then on all of it. Pure python and numpy, no Ray.

A labelled row is simple when it has one tag, one connected foreground region in its mask and a
label confidence at or above the median of the label set's labelled rows; a source (an image, or
a video with its labelled frames) is simple when all its rows are. What the manifest already
holds decides it: `tags`, `confidence` and the mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from pipeline import schema

MIN_REGION_SHARE = 0.005  # foreground components smaller than this share of the mask are specks


def foreground_regions(mask: np.ndarray, min_share: float = MIN_REGION_SHARE) -> int:
    """How many 8-connected foreground regions a mask holds, specks below min_share of its
    pixels not counted. mask (H, W) uint8: 0 background, 1..C-1 classes, 255 = ignore (neither)."""
    foreground = ((mask != schema.BACKGROUND) & (mask != schema.IGNORE)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    return int((areas >= min_share * mask.size).sum())


def simplicity(n_tags: int, confidence: float | None, regions: int) -> float:
    """A score for ranking rows, higher is simpler: one tag (+1), one foreground region (+1),
    plus the label confidence in [0, 1] (0 when unknown)."""
    return float(n_tags == 1) + float(regions == 1) + float(confidence or 0.0)


def is_simple(n_tags: int, confidence: float | None, regions: int, confidence_cut: float) -> bool:
    """One tag, one foreground region and a known confidence of at least confidence_cut."""
    return n_tags == 1 and regions == 1 and confidence is not None and confidence >= confidence_cut


def median_confidence(rows: Iterable[dict[str, Any]]) -> float | None:
    """The median confidence of the labelled rows that have one; None when none has."""
    values = [
        float(r[schema.CONFIDENCE])
        for r in rows
        if r.get(schema.STATUS) == schema.LABELLED and r.get(schema.CONFIDENCE) is not None
    ]
    return float(np.median(values)) if values else None


def simple_masks(rows: list[dict[str, Any]], regions: dict[str, int]) -> set[str]:
    """The mask_uri of every simple labelled row.

    rows: manifest rows (dicts with status, tags, confidence, mask_uri); regions:
    foreground_regions of each labelled row's mask, by mask_uri (a row missing there is not
    simple). Empty when no row has a confidence.
    """
    cut = median_confidence(rows)
    if cut is None:
        return set()
    return {
        row[schema.MASK_URI]
        for row in rows
        if row.get(schema.STATUS) == schema.LABELLED
        and row.get(schema.MASK_URI)
        and is_simple(
            len(row.get(schema.TAGS) or ()),
            row.get(schema.CONFIDENCE),
            regions.get(row[schema.MASK_URI], -1),
            cut,
        )
    }


def simple_sources(sources: list[dict[str, Any]], masks: set[str]) -> list[dict[str, Any]]:
    """The training sources (segmenter_data.read_label_set: "masks" a JSON list of mask uris)
    all of whose masks are in `masks` (the same uris), in their order."""
    return [s for s in sources if set(json.loads(s["masks"])) <= masks]


def simple_epoch_count(simple_epochs: float, epochs: int) -> int:
    """How many of `epochs` train on the simple part: simple_epochs < 1 is a share of them
    (rounded, at least 1), >= 1 a count; never more than epochs."""
    count = max(1, round(simple_epochs * epochs)) if simple_epochs < 1 else int(simple_epochs)
    return min(count, epochs)


def dataset_for_epoch(epoch: int, simple_epochs: int) -> str:
    """The Ray Train dataset an epoch (0-based) trains on: "simple" for the first simple_epochs,
    then "train". A resumed run picks up the same phase from its epoch number."""
    return "simple" if epoch < simple_epochs else "train"


def total_steps(steps_simple: int, steps_all: int, simple_epochs: int, epochs: int) -> int:
    """The poly schedule's length when the first simple_epochs epochs have steps_simple steps."""
    return simple_epochs * steps_simple + (epochs - simple_epochs) * steps_all


def steps_per_epoch(samples: int, world: int, batch_size: int) -> int:
    """Optimizer steps one worker makes per epoch over `samples` (drop_last batches, >= 1)."""
    return max(1, samples // world // max(2, batch_size // world))
