"""Pictures for the label report: the VOC palette, mask and CAM overlays, inline JPEG data URIs.

All images are HxWx3 uint8 RGB; masks and CAMs HxW uint8.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from pipeline.schema import BACKGROUND


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: (256, 3) uint8 RGB; 0 = black, 255 (ignore) = (224, 224, 192)."""
    palette, index = np.zeros((256, 3), np.uint8), np.arange(256)
    for bit in range(8):  # bit b of R, G, B = bits 3b, 3b+1, 3b+2 of the index, high bit first
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * bit + channel) & 1) << (7 - bit)).astype(
                np.uint8
            )
    return palette


PALETTE = voc_palette()


def colorize(mask: np.ndarray) -> np.ndarray:
    """HxW uint8 class indices (255 = ignore) -> HxWx3 uint8 RGB in the VOC palette."""
    return PALETTE[mask]


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """image HxWx3 uint8 RGB, mask HxW uint8 -> RGB; background left as is, others tinted."""
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    blend = (1 - alpha) * image + alpha * colorize(mask)
    return np.where((mask == BACKGROUND)[..., None], image, blend).astype(np.uint8)


def heatmap(cam: np.ndarray) -> np.ndarray:
    """cam HxW uint8 (0..255) -> HxWx3 uint8 RGB in the JET colour map."""
    return cv2.cvtColor(cv2.applyColorMap(cam, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_cam(image: np.ndarray | None, cam: np.ndarray, alpha: float) -> np.ndarray:
    """image HxWx3 uint8 RGB (or None: the bare heatmap), cam HxW uint8 -> RGB heatmap overlay."""
    if image is None:
        return heatmap(cam)
    cam = cv2.resize(cam, image.shape[1::-1]) if cam.shape != image.shape[:2] else cam
    return ((1 - alpha) * image + alpha * heatmap(cam)).astype(np.uint8)


def data_uri(rgb: np.ndarray, max_side: int, quality: int, nearest: bool = False) -> str:
    """HxWx3 uint8 RGB -> a base64 JPEG data URI, downscaled so its longest side is <= max_side."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")
