"""Decode images and sample video frames into RGB arrays, or fail with a readable reason.

The pixel limit is checked from the header, before any pixel is decoded, so a decompression bomb
costs nothing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline import storage

Image.MAX_IMAGE_PIXELS = (
    None  # our own limit (DecodeConfig.max_pixels) applies, with a clear reason
)


class DecodeError(ValueError):
    """The item cannot be decoded; str(error) is the reason recorded in its failed row."""


@dataclass(frozen=True)
class DecodeConfig:
    max_pixels: int = 40_000_000  # larger images/frames are refused before decoding
    max_image_bytes: int = 100_000_000  # larger image files are refused before reading
    frame_stride: int = 1  # sample every n-th video frame
    max_frames_per_video: int = 300  # stop sampling a video after this many frames
    window_frames: int = 100  # long videos are cut into windows of this many sampled frames


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 RGB with EXIF orientation applied.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted. Raises DecodeError.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError(
                    f"image too large: {width}x{height} = {width * height} pixels "
                    f"> limit {max_pixels} (decode.max_pixels)"
                )
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except DecodeError:
        raise
    except UnidentifiedImageError:  # its message holds a memory address: runs would differ
        raise DecodeError("cannot decode image: not a known image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DecodeError(f"cannot decode image: {error}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / peak * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def read_image(uri: str, cfg: DecodeConfig | None = None) -> np.ndarray:
    """Read and decode an image from a local path or URI. Raises DecodeError or FileNotFoundError."""
    cfg = cfg or DecodeConfig()
    file_size = storage.size(uri)
    if file_size > cfg.max_image_bytes:
        raise DecodeError(f"file too large: {file_size} bytes > limit {cfg.max_image_bytes}")
    return decode_image(storage.read_bytes(uri), cfg.max_pixels)


def read_video_frames(
    uri: str, cfg: DecodeConfig | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Sampled frames of a video as (frame_index, HxWx3 uint8 RGB); frame_index = 0-based decode order.

    Raises DecodeError when the video cannot be opened, is too large per frame, or has no frames.
    """
    cfg = cfg or DecodeConfig()
    with storage.local_copy(uri) as path:
        if os.path.getsize(path) == 0:
            raise DecodeError("empty file (0 bytes)")
        capture = cv2.VideoCapture(path)
        try:
            yield from _sample_frames(capture, cfg)
        finally:
            capture.release()


def _sample_frames(
    capture: cv2.VideoCapture, cfg: DecodeConfig
) -> Iterator[tuple[int, np.ndarray]]:
    if not capture.isOpened():
        raise DecodeError("cannot open video (corrupt or unsupported container)")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > cfg.max_pixels:
        raise DecodeError(f"video frames too large: {width}x{height} > limit {cfg.max_pixels}")
    index, sampled = 0, 0
    while sampled < cfg.max_frames_per_video:
        ok, frame = capture.read()
        if not ok:
            break
        if index % cfg.frame_stride == 0:
            sampled += 1
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1
    if index == 0:
        raise DecodeError("video has no decodable frames")
