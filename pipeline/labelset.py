"""The label set's manifest rows (data contract): its columns (MANIFEST_SCHEMA) and the one row
builder every writer uses (pseudo-label's LabelWriter, predict, the driver's safety net).

Where a row's mask lives is schema.mask_path; writing, merging and resuming label sets is output.py.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline import schema
from pipeline.collection import Item
from pipeline.rows import dumps

MANIFEST_SCHEMA = pa.schema(
    [
        (schema.ID, pa.string()),
        (schema.URI, pa.string()),
        (schema.KIND, pa.string()),
        (schema.TAGS, pa.list_(pa.string())),
        (schema.FRAME_INDEX, pa.int64()),
        (schema.STATUS, pa.string()),
        (schema.REASON, pa.string()),
        (schema.MASK_URI, pa.string()),
        (schema.SCORES, pa.string()),
        (schema.CONFIDENCE, pa.float64()),
        (schema.SOURCE_INDEX, pa.int64()),
        (schema.GROUP, pa.string()),
    ]
)


def manifest_row(
    *,
    item_id: str,
    uri: str,
    kind: str,
    tags: Any,
    frame_index: int | None,
    status: str,
    reason: str | None,
    mask_uri: str | None,
    scores: dict[str, float],
    source_index: int,
    group: str,
    confidence: float | None = None,
) -> dict[str, Any]:
    """One manifest row, MANIFEST_SCHEMA's columns in order (scores written as JSON). tags: a list,
    or the pipeline's JSON text; frame_index: None or NO_FRAME for an image (to_manifest_table)."""
    return {
        schema.ID: item_id,
        schema.URI: uri,
        schema.KIND: kind,
        schema.TAGS: tags,
        schema.FRAME_INDEX: frame_index,
        schema.STATUS: status,
        schema.REASON: reason,
        schema.MASK_URI: mask_uri,
        schema.SCORES: dumps(scores),
        schema.CONFIDENCE: confidence,
        schema.SOURCE_INDEX: source_index,
        schema.GROUP: group,
    }


def item_manifest_row(item: Item, status: str, reason: str | None, group: str, **row: Any) -> dict:
    """A collection item's manifest row (frame_index, mask_uri, scores: none unless given)."""
    defaults = {"frame_index": None, "mask_uri": None, "scores": {}}
    return manifest_row(
        item_id=item.id,
        uri=item.source_uri,
        kind=item.kind,
        tags=list(item.tags),
        status=status,
        reason=reason,
        source_index=item.source_index,
        group=group,
        **{**defaults, **row},
    )
