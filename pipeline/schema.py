"""Column names, statuses and constants shared by every stage.

Stages hand data on as Ray Data columns named here; nothing else names a column by string.
"""

from __future__ import annotations

IGNORE = 255  # mask value for "too uncertain to train on"
BACKGROUND = 0  # class index of background in every label space

# Input / output manifest columns (data contract).
ID = "id"
URI = "uri"
KIND = "kind"
TAGS = "tags"
FRAME_INDEX = "frame_index"
STATUS = "status"
REASON = "reason"
MASK_URI = "mask_uri"
SCORES = "scores"  # JSON object {tag: score}
CONFIDENCE = "confidence"  # float in [0, 1] per labelled row (labelling.label_confidence); else null

# Working columns between stages (never written to the output manifest).
IMAGE = "image"  # HxWx3 uint8 RGB
TAG_IDS = "tag_ids"  # list[int]: label-space indices of the item's known tags
CAM = "cam"  # KxhXw float32 in [0, 1], one map per entry of TAG_IDS (working resolution)
TAG_SCORES = "tag_scores"  # list[float]: classifier probability per entry of TAG_IDS
# TxCxhxw float16: the classifier backbone's stride-8 features per image or video frame (the
# appearance models of the image GrabCut step and the video cut); Tx0x1x1 without a classifier
FEATURES = "features"
PIXEL_FEATURES = "pixel_features"  # 1xCxhxw float16: an image's pixel-head input (first pass only)
MASK = "mask"  # HxW uint8 class indices, IGNORE = 255
GROUP = "group"  # video id + window: frames of one group meet in one task
HEIGHT = "height"
WIDTH = "width"
SOURCE_INDEX = "source_index"  # row number in the input manifest (keeps output order stable)
SOURCE_URI = "source_uri"  # the uri as written in the input manifest
FRAMES = "frames"  # TxHxWx3 uint8 RGB: an image is a 1-frame stack, a video window T frames
FRAME_INDICES = "frame_indices"  # JSON list of 0-based frame indices of FRAMES (-1 for an image)
MASKS = "masks"  # TxHxW uint8, IGNORE = 255 (filtered frames hold zeros)
FRAME_STATUS = "frame_status"  # JSON list: status per frame
FRAME_REASONS = "frame_reasons"  # JSON list: reason per frame (null when labelled)
NO_FRAME = -1  # FRAME_INDEX of an image inside the pipeline (null in the output manifest)
ITEMS = "items"  # JSON list of decode input rows: one work unit of the fused actors (a video or a few images)
TIMING_PREFIX = "seconds_"  # per-row seconds spent in a stage, e.g. seconds_cam

KIND_IMAGE = "image"
KIND_VIDEO = "video"

LABELLED = "labelled"
FILTERED = "filtered"
FAILED = "failed"
STATUSES = (LABELLED, FILTERED, FAILED)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")

VOC_CLASSES = (  # fmt: skip
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# Output layout.
MANIFEST_NAME = "manifest.parquet"
RUN_NAME = "run.json"
MASKS_DIR = "masks"
PIXEL_HEAD_NAME = "pixel_head.npz"  # the image route's pixel head, fitted by the first pass
PARTS_DIR = "_parts"  # per-batch manifest parts: durable progress for resume


def mask_path(item_id: str, frame_index: int | None = None, folder: str = MASKS_DIR) -> str:
    """Relative mask path (data contract): folder/<id>.png for an image (frame_index None or
    NO_FRAME), folder/<id>/<frame_index:06d>.png for a video frame; gt/ uses the same layout."""
    if frame_index is None or frame_index == NO_FRAME:
        return f"{folder}/{item_id}.png"
    return f"{folder}/{item_id}/{frame_index:06d}.png"
