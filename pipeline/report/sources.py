"""Source images and video frames of the rows a label report shows, read from the collection."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline import schema, storage


class ReportSources:
    """Source images and video frames (HxWx3 uint8 RGB) of the rows to show; None if unreadable."""

    def __init__(self, collection_uri: str | None, rows: list[dict]):
        self.base, self.videos = collection_uri, {}
        self.wanted: dict[str, set[int]] = {}
        for row in rows:
            if row.get(schema.FRAME_INDEX) is not None:
                self.wanted.setdefault(row[schema.URI], set()).add(int(row[schema.FRAME_INDEX]))

    def get(self, row: dict) -> np.ndarray | None:
        uri = row[schema.URI]
        if row.get(schema.KIND) == schema.KIND_VIDEO and row.get(schema.FRAME_INDEX) is None:
            return None  # a whole-video row has no single frame to show
        if not (storage.is_remote(uri) or uri.startswith("/")):
            if self.base is None:
                return None
            uri = storage.resolve(self.base, uri)
        try:
            if row.get(schema.FRAME_INDEX) is None:
                bgr = cv2.imdecode(
                    np.frombuffer(storage.read_bytes(uri), np.uint8), cv2.IMREAD_COLOR
                )
                return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if uri not in self.videos:
                self.videos[uri] = _decode_frames(uri, self.wanted.get(row[schema.URI], set()))
            return self.videos[uri].get(int(row[schema.FRAME_INDEX]))
        except (OSError, ValueError):  # show what can be shown; failures are listed anyway
            return None


def _decode_frames(uri: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames of a video (0-based decode order) whose index is in wanted, as RGB."""
    out: dict[int, np.ndarray] = {}
    with storage.local_copy(uri) as path:
        capture = cv2.VideoCapture(path)
        for index in range(max(wanted, default=-1) + 1):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted:
                out[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        capture.release()
    return out
