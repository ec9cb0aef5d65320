"""What the classifier's and the segmenter's training share: the all-gather across workers.

The gathers run inside Ray Train workers over torch.distributed (any backend) and are the identity
when there is no process group or only one worker, so the loops' pieces also run in plain tests.
"""

from __future__ import annotations

import numpy as np
import torch.distributed as dist


def all_gather(array: np.ndarray) -> list[np.ndarray]:
    """Every worker's `array`, in rank order ([array] without a process group or with one worker).
    Every worker must call it (a collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [array]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, array)
    return parts


def concat_across_workers(array: np.ndarray) -> np.ndarray:
    """Rows of every worker's array, concatenated in rank order (the array itself for one)."""
    parts = all_gather(array)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def sum_across_workers(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of every worker's array (same shape on all; the array itself for one)."""
    parts = all_gather(array)
    return parts[0] if len(parts) == 1 else np.sum(parts, axis=0)


def mean_across_workers(value: float, count: int) -> float:
    """The mean of a per-worker mean `value` over `count` samples, weighted by the counts."""
    total, seen = sum_across_workers(np.array([value * count, count], np.float64))
    return float(total / max(seen, 1))
