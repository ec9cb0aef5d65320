import io

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.decode import DecodeConfig, DecodeError, decode_image, read_video_frames


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA"])
def test_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    data = encode(Image.new(mode, (7, 5)), fmt)
    out = decode_image(data, 10_000)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8


def test_sixteen_bit_values_are_scaled():
    array = np.full((4, 4), 65535, np.uint16)
    out = decode_image(encode(Image.fromarray(array)), 10_000)
    assert out.max() == 255


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (8, 4))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    out = decode_image(encode(image, "JPEG", exif=exif), 10_000)
    assert out.shape == (8, 4, 3)


def test_empty_truncated_and_text_files_fail_with_reasons():
    with pytest.raises(DecodeError, match="empty"):
        decode_image(b"", 100)
    data = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    with pytest.raises(DecodeError, match="cannot decode"):
        decode_image(data[: len(data) // 2], 100_000)
    with pytest.raises(DecodeError, match="cannot decode"):
        decode_image(b"hello, not an image", 100)


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("L", (3000, 3000)))
    with pytest.raises(DecodeError, match="too large"):
        decode_image(data, 1_000_000)


def write_video(path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for t in range(frames):
        writer.write(np.full((24, 32, 3), t * 10, np.uint8))
    writer.release()


def test_video_frames_are_sampled_with_stride_and_cap(tmp_path):
    write_video(tmp_path / "v.mp4", 10)
    frames = list(
        read_video_frames(
            str(tmp_path / "v.mp4"), DecodeConfig(frame_stride=3, max_frames_per_video=3)
        )
    )
    assert [index for index, _ in frames] == [0, 3, 6]
    assert frames[0][1].shape == (24, 32, 3)


def test_broken_videos_fail_with_reasons(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        list(read_video_frames(str(tmp_path / "empty.mp4")))
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(DecodeError):
        list(read_video_frames(str(tmp_path / "junk.mp4")))
