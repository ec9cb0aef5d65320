"""Generate a small synthetic web collection (images + videos + ground truth) for the demo.

Objects are discs ('ball') and rectangles ('box') on smooth textured backgrounds; videos move an
object across a panning background and start with an unrelated intro shot, like a web clip.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from pipeline import schema

CLASSES = ["background", "ball", "box"]
PHOTO_CLASSES = ["cat", "person", "motorbike"]  # added to the label space with photos=True
# Freely licensed photos inside scikit-image's wheel (skimage/data): file -> tags. They have no
# ground truth; the report shows their labels. coffee and rocket are negatives (no demo class).
PHOTOS = {
    "chelsea.png": ["cat"],
    "astronaut.png": ["person"],
    "motorcycle_left.png": ["motorbike"],
    "motorcycle_right.png": ["motorbike"],
    "coffee.png": [],
    "rocket.jpg": [],
}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(40, 200, size=3)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), 6)
    ramp = np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    return np.clip(base + noise + ramp, 0, 255).astype(np.uint8)


def _draw(
    image: np.ndarray, gt: np.ndarray, rng: np.random.Generator, label: int, centre, size: int
):
    colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
    layer = np.zeros(gt.shape, np.uint8)
    x, y = int(centre[0]), int(centre[1])
    if label == 1:
        cv2.circle(layer, (x, y), size, 1, -1)
    else:
        cv2.rectangle(
            layer, (x - size, y - int(size * 0.7)), (x + size, y + int(size * 0.7)), 1, -1
        )
    image[layer == 1] = colour
    gt[layer == 1] = label


def make_image(
    rng: np.random.Generator, labels: list[int], size=(160, 200)
) -> tuple[np.ndarray, np.ndarray]:
    height, width = size
    image, gt = _background(rng, height, width), np.zeros(size, np.uint8)
    for label in labels:
        centre = rng.integers([40, 40], [width - 40, height - 40])
        _draw(image, gt, rng, label, centre, int(rng.integers(18, 34)))
    return image, gt


def _write_video(path: str, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def make_video(
    rng: np.random.Generator, label: int, frames: int = 24, intro: int = 8, size=(144, 192)
):
    height, width = size
    scene, intro_scene = (
        _background(rng, height, width + frames * 3),
        _background(rng, height, width),
    )
    colour_seed = int(rng.integers(1 << 30))
    images, gts = [], []
    for t in range(intro):
        images.append(np.roll(intro_scene, t * 2, axis=1))
        gts.append(np.zeros(size, np.uint8))
    for t in range(frames):
        image = scene[:, t * 3 : t * 3 + width].copy()
        gt = np.zeros(size, np.uint8)
        _draw(image, gt, np.random.default_rng(colour_seed), label, (40 + t * 4, height // 2), 22)
        images.append(image)
        gts.append(gt)
    return images, gts


def photo_rows(root: str) -> list[dict]:
    """Copy the PHOTOS from the installed scikit-image into root/media; their manifest rows
    (none when scikit-image is not installed)."""
    try:
        # deferred: scikit-image is only needed for sample photos
        import skimage.data
    except ImportError:
        return []
    folder = os.path.dirname(skimage.data.__file__)
    rows = []
    for name, tags in PHOTOS.items():
        source = os.path.join(folder, name)
        if not os.path.exists(source):
            continue
        item_id = "photo_" + os.path.splitext(name)[0]
        target = os.path.join(root, "media", item_id + os.path.splitext(name)[1])
        with open(source, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        rows.append({"id": item_id, "uri": os.path.relpath(target, root), "kind": "image",
                     "tags": tags})  # fmt: skip
    return rows


def generate(
    root: str, images: int = 48, videos: int = 2, seed: int = 0, photos: bool = False
) -> str:
    """Write the collection under root (manifest.jsonl, classes.json, media/, gt/); returns root."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "media"), exist_ok=True)
    os.makedirs(os.path.join(root, "gt"), exist_ok=True)
    rows = []
    for i in range(images):
        labels = [[1], [2], [1, 2], []][i % 4]
        image, gt = make_image(rng, labels)
        item_id = f"img_{i:03d}"
        cv2.imwrite(
            os.path.join(root, "media", f"{item_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        )
        cv2.imwrite(os.path.join(root, "gt", f"{item_id}.png"), gt)
        rows.append(
            {
                "id": item_id,
                "uri": f"media/{item_id}.jpg",
                "kind": "image",
                "tags": [CLASSES[k] for k in labels],
            }
        )
    for v in range(videos):
        label = 1 + v % 2
        frames, gts = make_video(rng, label)
        item_id = f"clip_{v:02d}"
        _write_video(os.path.join(root, "media", f"{item_id}.mp4"), frames)
        os.makedirs(os.path.join(root, "gt", item_id), exist_ok=True)
        for t, gt in enumerate(gts):
            cv2.imwrite(os.path.join(root, schema.mask_path(item_id, t, "gt")), gt)
        rows.append(
            {
                "id": item_id,
                "uri": f"media/{item_id}.mp4",
                "kind": "video",
                "tags": [CLASSES[label]],
            }
        )
    if photos:
        rows += photo_rows(root)
    with open(os.path.join(root, "manifest.jsonl"), "w") as manifest:
        manifest.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(root, "classes.json"), "w") as classes:
        json.dump(CLASSES + PHOTO_CLASSES if photos else CLASSES, classes)
    return root
