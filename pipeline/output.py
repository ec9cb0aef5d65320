"""The pseudo-label set on disk or S3: masks, per-batch manifest parts, manifest.parquet, run.json.

Masks are written before the part that lists them, each atomically, so a killed job leaves either a
row with its mask or nothing that a rerun would trust. The final manifest is rebuilt from all parts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.labelset import MANIFEST_SCHEMA, manifest_row
from pipeline.rows import loads


def label_confidence(mask: np.ndarray, tag_scores: list[float]) -> float:
    """How far a label can be trusted, in [0, 1]: the share of confidently labelled pixels
    (HxW uint8 mask, 255 = ignore) times the mean classifier score of the item's tags (1 when the
    item has no tags or no classifier ran). train-segmenter --min-confidence filters on it."""
    confident = float(np.mean(mask != schema.IGNORE)) if mask.size else 0.0
    return confident * (float(np.mean(tag_scores)) if tag_scores else 1.0)


TIMINGS = ("decode", "cam", "refine", "write")


class LabelSetError(ValueError):
    """A URI that should hold a label set (pseudo-label or predict output) does not."""


def require_label_set(labels_uri: str) -> str:
    """LABELS/manifest.parquet's URI, or LabelSetError: a cheap check commands run before they
    start Ray or read anything else, so a mistyped path fails at once with a clear message."""
    uri = storage.join(labels_uri, schema.MANIFEST_NAME)
    if not storage.exists(uri):
        raise LabelSetError(
            f"no label set at {labels_uri}: {schema.MANIFEST_NAME} not found "
            "(write one with `webseg pseudo-label` or `webseg predict`)"
        )
    return uri


def encode_png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cannot encode a PNG of shape {array.shape}")
    return data.tobytes()


class LabelWriter:
    """Writes one decoded-and-refined row's masks and returns its manifest rows (one per frame)."""

    def __init__(self, out_uri: str, save_cams: bool):
        self.out_uri, self.save_cams = out_uri, save_cams

    def frame_rows(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        indices = loads(row[schema.FRAME_INDICES])
        statuses, reasons = loads(row[schema.FRAME_STATUS]), loads(row[schema.FRAME_REASONS])
        tags, scores = loads(row[schema.TAGS]), row[schema.TAG_SCORES]
        out = []
        for t, frame_index in enumerate(indices):
            status = statuses[t] if t < len(statuses) else schema.FAILED
            mask_uri = None
            if status == schema.LABELLED:
                mask_uri = self._write_mask(str(row[schema.ID]), frame_index, row[schema.MASKS][t])
            frame_scores = (
                {tag: round(float(s), 4) for tag, s in zip(tags, scores[t], strict=False)}
                if len(scores) > t
                else {}
            )
            out.append(
                self._row(
                    row,
                    frame_index,
                    status,
                    reasons[t] if t < len(reasons) else None,
                    mask_uri,
                    frame_scores,
                    len(indices),
                    row[schema.MASKS][t] if status == schema.LABELLED else None,
                )
            )
        if self.save_cams and row[schema.KIND] == schema.KIND_IMAGE and out[0][schema.MASK_URI]:
            self._write_cam(str(row[schema.ID]), row[schema.CAM], row[schema.MASKS][0].shape)
        return out

    def _row(self, row, frame_index, status, reason, mask_uri, frame_scores, frames, mask=None):
        confidence = None
        if status == schema.LABELLED and mask is not None:
            confidence = round(label_confidence(mask, list(frame_scores.values())), 4)
        timings = {
            f"{schema.TIMING_PREFIX}{s}": float(row.get(f"{schema.TIMING_PREFIX}{s}", 0.0)) / frames
            for s in TIMINGS[:3]
        }
        return {
            **manifest_row(
                item_id=str(row[schema.ID]),
                uri=str(row[schema.SOURCE_URI]),
                kind=str(row[schema.KIND]),
                tags=str(row[schema.TAGS]),
                frame_index=int(frame_index),
                status=status,
                reason=reason if status != schema.LABELLED else None,
                mask_uri=mask_uri,
                scores=frame_scores,
                source_index=int(row[schema.SOURCE_INDEX]),
                group=str(row[schema.GROUP]),
                confidence=confidence,
            ),
            **timings,
        }

    def _write_mask(self, item_id: str, frame_index: int, mask: np.ndarray) -> str:
        relative = schema.mask_path(item_id, frame_index)
        storage.write_bytes(storage.join(self.out_uri, relative), encode_png(mask.astype(np.uint8)))
        return relative

    def _write_cam(self, item_id: str, cam: np.ndarray, shape: tuple[int, int]) -> None:
        if cam.ndim != 4 or cam.shape[1] == 0:
            return
        heat = cv2.resize(cam[0].max(axis=0), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        heat = (np.clip(heat, 0, 1) * 255).astype(np.uint8)
        storage.write_bytes(storage.join(self.out_uri, "cams", f"{item_id}.png"), encode_png(heat))

    def write_part(self, rows: list[dict[str, Any]]) -> None:
        """Durable progress: this batch's rows as one parquet part, written after its masks."""
        if rows:
            part = storage.join(
                self.out_uri, schema.PARTS_DIR, storage.unique_name(suffix=".parquet")
            )
            storage.write_bytes(part, table_bytes(to_manifest_table(rows)))


def to_manifest_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Internal rows (tags as JSON, -1 frame index for images) -> the contract's manifest table."""
    columns: dict[str, list] = {field.name: [] for field in MANIFEST_SCHEMA}
    for row in rows:
        for name in columns:
            value = row.get(name)
            if name == schema.TAGS and isinstance(value, str):
                value = loads(value)
            if name == schema.FRAME_INDEX and value == schema.NO_FRAME:
                value = None
            columns[name].append(value)
    return pa.table(columns, schema=MANIFEST_SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def read_table(uri: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(storage.read_bytes(uri)))


def read_previous_rows(out_uri: str) -> list[dict[str, Any]]:
    """Rows of earlier runs into the same output: its manifest, then every part (later ones win)."""
    rows: list[dict[str, Any]] = []
    manifest = storage.join(out_uri, schema.MANIFEST_NAME)
    if storage.exists(manifest):
        rows.extend(read_table(manifest).to_pylist())
    for part in storage.list_files(storage.join(out_uri, schema.PARTS_DIR), ".parquet"):
        rows.extend(read_table(part).to_pylist())
    return rows


def row_key(row: dict[str, Any]) -> tuple:
    return (row.get(schema.SOURCE_INDEX), row[schema.ID], row.get(schema.FRAME_INDEX))


def completed_groups(rows: list[dict[str, Any]], retry_failed: bool) -> frozenset[str]:
    """Groups (an image, or a video window) whose rows a rerun can keep."""
    failed = {r[schema.GROUP] for r in rows if r[schema.STATUS] == schema.FAILED}
    groups = {r[schema.GROUP] for r in rows if r.get(schema.GROUP)}
    return frozenset(groups - failed if retry_failed else groups)


def merge_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (item, frame): later rows replace earlier ones; sorted in input order.

    A video's whole-item failure (no frame index) is dropped once a retry produced its frame rows.
    """
    latest = {row_key(r): r for r in rows}
    with_frames = {_item_of(r) for r in latest.values() if r[schema.FRAME_INDEX] is not None}
    kept = [
        r
        for r in latest.values()
        if not (
            r[schema.STATUS] == schema.FAILED
            and r[schema.FRAME_INDEX] is None
            and _item_of(r) in with_frames
        )
    ]
    return sorted(kept, key=lambda r: (r[schema.SOURCE_INDEX], r[schema.FRAME_INDEX] or -1))


def _item_of(row: dict[str, Any]) -> str:
    return row[schema.GROUP].split("#")[0]


def write_manifest(out_uri: str, rows: list[dict[str, Any]]) -> None:
    storage.write_bytes(
        storage.join(out_uri, schema.MANIFEST_NAME),
        table_bytes(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)),
    )


def status_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = Counter(r[schema.STATUS] for r in rows)
    reasons = Counter(
        _reason_kind(r[schema.REASON]) for r in rows if r[schema.STATUS] == schema.FAILED
    )
    return {"rows": len(rows), "status": dict(statuses), "failed_reasons": dict(reasons)}


def _reason_kind(reason: str | None) -> str:
    return (reason or "unknown").split(":")[0][:80]


def write_run_json(out_uri: str, info: dict[str, Any]) -> None:
    info = {**info, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    storage.write_text(
        storage.join(out_uri, schema.RUN_NAME), json.dumps(info, indent=2, default=str)
    )
