"""Repeat-factor sampling of the segmenter's training sources (Gupta et al., LVIS, CVPR 2019).

A class's repeat factor is r_c = max(1, sqrt(t / f_c)), f_c the share of the training samples
(images and labelled frames) whose item is tagged c; a source repeats round(max_c r_c) times per
epoch (once without tags). LVIS sets t = 0.001 for 100k images; here t = 1 / the number of tags
seen, with no knob: a class is rare when it is in fewer samples than it would be if every tag were
equally common. Pure: no Ray, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter


def repeat_factors(tags: list[list[str]], samples: list[int]) -> list[int]:
    """Per source its tags and its sample count (1 for an image, its labelled frames for a
    video) -> how many times each source appears in an epoch (>= 1)."""
    if len(tags) != len(samples):
        raise ValueError(f"{len(tags)} tag lists but {len(samples)} sample counts")
    total = sum(samples)
    counts: Counter[str] = Counter()
    for source_tags, n in zip(tags, samples, strict=True):
        for tag in set(source_tags):
            counts[tag] += n
    if not counts or total == 0:
        return [1] * len(tags)
    threshold = 1.0 / len(counts)
    per_class = {c: max(1.0, math.sqrt(threshold / (n / total))) for c, n in counts.items()}
    return [max([1, *(round(per_class[t]) for t in set(source_tags))]) for source_tags in tags]


def repeated(sources: list[dict], factors: list[int]) -> list[dict]:
    """Each source listed factor times (in place: copies follow their original)."""
    return [source for source, k in zip(sources, factors, strict=True) for _ in range(k)]
