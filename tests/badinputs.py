"""Generate the bad-input corpus: a real collection folder (manifest.jsonl + media/) in a tmp dir.

Every case of issue 6 is generated here, nothing is committed as a binary:

    from badinputs import build_corpus
    cases = build_corpus(tmp_path / "bad")        # writes manifest.jsonl and media/
    cases[i].status, cases[i].reason              # what the i-th manifest row must end as

Each case is exactly one manifest line, so `Case.index` is the item's `source_index`.
`build_good_collection` writes a plain collection of synthetic images (and a video) for the
resume and fault tests, which need a job long enough to interrupt.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

BOMB_SIDE = 30_000  # 900 M pixels: far above decode.max_pixels, only its header may be read


@dataclass(frozen=True)
class Case:
    """One manifest line and the outcome the pipeline must give it."""

    name: str
    index: int  # the line's source_index (0-based, one line per case)
    item_id: str  # the id the output manifest carries
    status: str  # "labelled" or "failed" for every row of the item
    reason: str | None  # substring of the reason (None for labelled rows)
    frames: int | None = None  # rows expected for a video (None: an image, one row)
    shape: tuple[int, int] | None = None  # (H, W) of a labelled image's mask


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """HxWx3 uint8 RGB: a textured background with one bright ellipse (a salient 'object')."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(40, 90, 3, dtype=np.uint8)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    centre = (int(width * rng.uniform(0.35, 0.65)), int(height * rng.uniform(0.35, 0.65)))
    axes = (max(2, width // 5), max(2, height // 4))
    colour = tuple(int(c) for c in rng.integers(150, 255, 3))
    return cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def write_video(
    path: Path, frames: int, size: tuple[int, int] = (64, 48), fourcc: str = "mp4v"
) -> None:
    """A video of a bright disc moving right over a textured background (size = (W, H))."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    background = scene(size[1], size[0], seed=99)
    for t in range(frames):
        frame = background.copy()
        cv2.circle(frame, (8 + 4 * t, size[1] // 2), max(3, size[1] // 6), (240, 60, 40), -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit side x side PNG (~110 KB; 900 M pixels decoded): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(6)
    body = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000))
    body += compressor.compress(row * (side % 1000)) + compressor.flush()
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _media() -> dict[str, bytes]:
    """File name -> content of every generated image file."""
    rgb = Image.fromarray(scene(48, 64, seed=1))
    good_jpg, good_png = encode(rgb, "JPEG", quality=90), encode(rgb, "PNG")
    exif_image = Image.fromarray(scene(32, 48, seed=2))  # stored 48 wide x 32 high
    exif = exif_image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees -> decoded 32 wide x 48 high
    sixteen = (scene(40, 56, seed=3)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    rgba = np.dstack([scene(40, 56, seed=4), np.full((40, 56), 128, np.uint8)])
    return {
        "good_rgb.jpg": good_jpg, "good_png.png": good_png, "my photo 01.jpg": good_jpg,
        "negative.jpg": encode(Image.fromarray(scene(48, 64, seed=5)), "JPEG"),
        "unknown_tags.jpg": encode(Image.fromarray(scene(48, 64, seed=6)), "JPEG"),
        "grayscale.png": encode(rgb.convert("L"), "PNG"),
        "rgba.png": encode(Image.fromarray(rgba), "PNG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG",
                              transparency=0),
        "sixteen_bit.png": encode(Image.fromarray(sixteen), "PNG"),
        "exif_rotated.jpg": encode(exif_image, "JPEG", exif=exif),
        "empty.jpg": b"",
        "truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "truncated.png": good_png[: len(good_png) // 2],
        "text_as.jpg": b"this is a text file, not a JPEG\n" * 4,
        "bomb.png": bomb_png(),
        "notes.txt": b"a file whose kind cannot be inferred\n",
        "empty.mp4": b"",
    }  # fmt: skip


def _videos(media: Path) -> None:
    write_video(media / "good_video.mp4", 8)
    write_video(media / "one_frame.mp4", 1)
    write_video(media / "zero_frames.avi", 0, fourcc="MJPG")  # a valid container with no frame
    write_video(media / "full.mp4", 10)
    data = (media / "full.mp4").read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (media / "full.mp4").unlink()


def _case(
    name: str,
    row: dict | bytes,
    reason: str | None = None,
    item_id: str | None = None,
    frames: int | None = None,
    shape: tuple[int, int] | None = (48, 64),
) -> tuple:
    """A CASES entry; reason None = labelled. item_id defaults to the row's id or the uri stem."""
    if item_id is None and isinstance(row, dict):
        item_id = row.get("id") or os.path.splitext(os.path.basename(row.get("uri", "")))[0]
    return name, row, reason, item_id, frames, shape


def _img(name: str, file: str, tags: list, shape=(48, 64)) -> tuple:
    return _case(name, {"uri": f"media/{file}", "tags": tags}, shape=shape)


ESCAPE = "../../etc/passwd"
CASES = [
    _img("good JPEG", "good_rgb.jpg", ["dog"]),
    _img("good PNG", "good_png.png", ["cat"]),
    _img("space in the file name", "my photo 01.jpg", ["dog"]),
    _img("empty tags (a negative)", "negative.jpg", []),
    _img("unknown tags (dropped, reported)", "unknown_tags.jpg", ["horse", "unicorn", "zebra"]),
    _img("grayscale", "grayscale.png", ["cat"]),
    _img("RGBA", "rgba.png", ["cat"], (40, 56)),
    _img("CMYK", "cmyk.jpg", ["cat"]),
    _img("palette with transparency", "palette.png", ["cat"]),
    _img("16-bit PNG", "sixteen_bit.png", ["cat"], (40, 56)),
    _img("EXIF rotation", "exif_rotated.jpg", ["cat"], (48, 32)),
    _case("video", {"uri": "media/good_video.mp4", "tags": ["car"]}, frames=8),
    _case("video of 1 frame", {"uri": "media/one_frame.mp4", "tags": ["car"]}, frames=1),
    _case("zero-byte image", {"uri": "media/empty.jpg", "tags": ["dog"]}, "empty file (0 bytes)"),
    _case("truncated JPEG", {"uri": "media/truncated.jpg", "tags": ["dog"]}, "cannot decode image"),
    _case(
        "truncated PNG",
        {"id": "truncated_png", "uri": "media/truncated.png", "tags": ["dog"]},
        "cannot decode image",
    ),
    _case("text file named .jpg", {"uri": "media/text_as.jpg", "tags": []}, "cannot decode image"),
    _case(
        "decompression bomb 30000x30000",
        {"uri": "media/bomb.png", "tags": ["dog"]},
        "image too large: 30000x30000",
    ),
    _case(
        "zero-byte video",
        {"id": "empty_video", "uri": "media/empty.mp4", "tags": ["car"]},
        "empty file (0 bytes)",
    ),
    _case(
        "truncated MP4",
        {"id": "truncated_mp4", "uri": "media/truncated.mp4", "tags": ["car"]},
        "cannot open video",
    ),
    _case(
        "video with 0 frames",
        {"uri": "media/zero_frames.avi", "tags": ["car"]},
        "video has no decodable frames",
    ),
    _case("missing file", {"uri": "media/missing.jpg", "tags": ["dog"]}, "file not found"),
    _case(
        "duplicate id",
        {"id": "good_rgb", "uri": "media/good_png.png", "tags": ["dog"]},
        "duplicate id: first used by row 0",
    ),
    _case("uri escaping the root", {"uri": ESCAPE, "tags": []}, "uri escapes the collection root"),
    _case(
        "uri escaping the root, kind given",
        {"id": "passwd_img", "uri": ESCAPE, "kind": "image"},
        "uri escapes the collection root",
    ),
    _case(
        "id escaping the output root",
        {"id": "../../outside", "uri": "media/good_rgb.jpg"},
        "unsafe id",
    ),
    _case(
        "non-UTF-8 file name (JSON escape)",
        {"id": "latin1", "uri": "media/caf\udce9.jpg"},
        "uri is not valid UTF-8",
    ),
    _case(
        "non-UTF-8 bytes in a manifest line",
        b'{"uri": "media/caf\xe9.jpg", "tags": []}',
        "malformed manifest row",
    ),
    _case("malformed JSON line", b"{not json", "malformed manifest row"),
    _case("JSON line that is not an object", b"[1, 2, 3]", "a line must hold a JSON object"),
    _case(
        "tags of the wrong type",
        {"id": "bad_tags", "uri": "media/good_rgb.jpg", "tags": 5},
        "bad tags",
    ),
    _case("missing uri", {"id": "no_uri", "tags": ["dog"]}, "missing uri"),
    _case("unknown extension", {"uri": "media/notes.txt", "tags": []}, "cannot infer kind"),
    _case(
        "unknown kind",
        {"id": "audio", "uri": "media/good_rgb.jpg", "kind": "audio"},
        "unknown kind: 'audio'",
    ),
]


def build_corpus(root: Path) -> list[Case]:
    """Write the bad-input collection under root; returns one Case per manifest line, in order."""
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    for name, data in _media().items():
        (media / name).write_bytes(data)
    (media / os.fsdecode(b"caf\xe9.jpg")).write_bytes((media / "good_rgb.jpg").read_bytes())
    _videos(media)
    lines, cases = [], []
    for index, (name, row, reason, item_id, frames, shape) in enumerate(CASES):
        lines.append(row if isinstance(row, bytes) else json.dumps(row).encode("ascii"))
        status = "failed" if reason else "labelled"
        cases.append(Case(name, index, item_id or f"line-{index + 1}", status, reason, frames,
                          None if reason else shape))  # fmt: skip
    (root / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return cases


def build_good_collection(root: Path, images: int, side: int = 160, videos: int = 1) -> int:
    """A clean collection: `images` synthetic photos (side x 3/4 side) and `videos` 6-frame videos.

    Returns the number of output rows an uninterrupted run must produce.
    """
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        image = Image.fromarray(scene(side * 3 // 4, side, seed=100 + i))
        (media / f"img_{i:03d}.jpg").write_bytes(encode(image, "JPEG", quality=90))
        rows.append({"uri": f"media/img_{i:03d}.jpg", "tags": [("dog", "cat", "horse")[i % 3]]})
    for v in range(videos):
        write_video(media / f"vid_{v}.mp4", 6)
        rows.append({"uri": f"media/vid_{v}.mp4", "tags": ["car"]})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return images + 6 * videos
