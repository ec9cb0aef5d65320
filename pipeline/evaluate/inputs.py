"""What evaluation compares: a label set's manifest and masks, a collection's gt/.

Other modules use these through pipeline.evaluate, the one package allowed to read gt/.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.collection import require_manifest
from pipeline.output import require_label_set
from pipeline.schema import BACKGROUND

_STATUS_PRIORITY = {schema.LABELLED: 3, schema.FILTERED: 2, schema.FAILED: 1}


def read_manifest(labels_uri: str) -> list[dict]:
    """Rows of LABELS/manifest.parquet as dicts (data contract columns)."""
    data = storage.read_bytes(require_label_set(labels_uri))
    return pq.read_table(pa.BufferReader(data)).to_pylist()


def require_ground_truth(collection_uri: str) -> None:
    """Raise unless the collection has a manifest and gt/ masks: a check commands run before they
    start Ray, for collections that are only scored (holdout, validation)."""
    require_manifest(collection_uri)
    list_gt(collection_uri)


def read_mask(uri: str) -> np.ndarray:
    """A single-channel 8-bit PNG as HxW uint8."""
    mask = cv2.imdecode(np.frombuffer(storage.read_bytes(uri), np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{uri}: not a single-channel 8-bit PNG")
    return mask


def list_gt(collection_uri: str) -> list[tuple[str, int | None, str]]:
    """(id, frame_index or None, uri) of every gt mask: gt/<id>.png, gt/<id>/<frame:06d>.png."""
    gt_uri = storage.join(collection_uri, "gt")
    fs, root = storage.filesystem(gt_uri)
    try:
        names = storage.with_retries(lambda: fs.find(root), f"list {gt_uri}")
    except FileNotFoundError:
        names = []
    if not names:
        raise ValueError(f"no ground truth under {gt_uri} (gt/<id>.png, gt/<id>/<frame>.png)")
    out = []
    for name in sorted(names):
        rel = posixpath.relpath(name.replace("\\", "/"), root.replace("\\", "/"))
        if not rel.endswith(".png") or posixpath.basename(rel).startswith("."):
            continue
        folder, stem = posixpath.split(rel[: -len(".png")])
        if folder and stem.isdigit():
            out.append((folder, int(stem), storage.join(gt_uri, rel)))
        else:
            out.append((rel[: -len(".png")], None, storage.join(gt_uri, rel)))
    return out


def index_rows(rows: Iterable[dict]) -> dict[tuple[str, int | None], dict]:
    """Rows keyed by (id, frame_index); on duplicates the most useful status wins."""
    index: dict[tuple[str, int | None], dict] = {}
    for row in rows:
        frame = row.get(schema.FRAME_INDEX)
        key = (row[schema.ID], None if frame is None else int(frame))
        if row[schema.STATUS] not in _STATUS_PRIORITY:
            raise ValueError(f"{key[0]}: unknown status {row[schema.STATUS]!r}")
        rank = _STATUS_PRIORITY[row[schema.STATUS]]
        if key not in index or rank > _STATUS_PRIORITY[index[key][schema.STATUS]]:
            index[key] = row
    return index


def item_name(item_id: str, frame: int | None) -> str:
    return item_id if frame is None else f"{item_id} frame {frame}"


def load_pair(labels_uri: str, row: dict | None, gt_uri: str, item: str):
    """(pred, gt, covered) for one gt item; failed/missing/filtered rows become all background."""
    gt = read_mask(gt_uri)
    if row is None or row[schema.STATUS] != schema.LABELLED:
        covered = row is not None and row[schema.STATUS] == schema.FILTERED
        return np.full_like(gt, BACKGROUND), gt, covered
    if not row.get(schema.MASK_URI):
        raise ValueError(f"{item}: status labelled but no mask_uri")
    pred = read_mask(storage.resolve(labels_uri, row[schema.MASK_URI]))
    if pred.shape != gt.shape:
        raise ValueError(f"{item}: mask size {pred.shape[::-1]} != gt size {gt.shape[::-1]} (WxH)")
    return pred, gt, True
