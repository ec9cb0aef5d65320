"""Helpers for Ray Data numpy batches: iterate rows, build columns (ragged tensors included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np


def batch_size(batch: dict[str, np.ndarray]) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def iter_rows(batch: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    """Rows of a numpy batch as dicts (tensor cells stay ndarrays)."""
    for i in range(batch_size(batch)):
        yield {name: column[i] for name, column in batch.items()}


def object_column(values: list[Any]) -> np.ndarray:
    """A 1-D object array whose cells are the given values (ndarrays of any shape stay whole)."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


def to_batch(
    rows: list[dict[str, Any]], tensor_columns: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Rows -> a numpy batch; tensor columns become object arrays of ndarrays (ragged allowed)."""
    if not rows:
        return {}
    batch = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        batch[name] = object_column(values) if name in tensor_columns else np.asarray(values)
    return batch


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def loads(text: Any) -> Any:
    return json.loads(str(text))
