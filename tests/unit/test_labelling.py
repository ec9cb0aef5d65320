"""Video windows labelled by the per-frame labeller ("crf"), by the cut checked against it
("both"), or by the cut with the per-frame labeller where nothing moved ("graph"): the per-frame
labeller must see each frame's own CAMs, not a centre prior."""

import numpy as np
import pytest

from pipeline import schema
from pipeline.label_config import VideoConfig
from pipeline.labelling import label_video_window, nothing_moved
from pipeline.refine.image_labeller import ImageLabelConfig

TAG = 7


def _corner_clip(n_frames: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (T x 96 x 128 x 3 uint8) with a red square moving along the top-left corner, far from
    the centre; T x 1 x 12 x 16 CAMs hot on the square; T x 96 x 128 bool true masks."""
    rng = np.random.default_rng(0)
    height, width = 96, 128
    texture = rng.integers(40, 140, (height // 4, width // 4 + n_frames, 3)).astype(np.uint8)
    background = np.repeat(np.repeat(texture, 4, 0), 4, 1)
    background[..., 2] = np.minimum(background[..., 2], 90)
    square = np.repeat(np.repeat(rng.integers(0, 60, (6, 6, 3)), 4, 0), 4, 1).astype(np.uint8)
    square[..., 0] += 190
    frames, cams, masks = [], [], []
    for t in range(n_frames):
        frame = background[:, :width].copy()
        y, x = 6, 6 + 3 * t
        frame[y : y + 24, x : x + 24] = square
        mask = np.zeros((height, width), bool)
        mask[y : y + 24, x : x + 24] = True
        cam = np.zeros((1, 12, 16), np.float32)
        cam[0, y // 8 : (y + 24) // 8, x // 8 : (x + 24) // 8] = 1.0
        frames.append(frame)
        cams.append(cam)
        masks.append(mask)
    return np.stack(frames), np.stack(cams), np.stack(masks)


@pytest.mark.parametrize("mode", ["crf", "both"])
def test_per_frame_labeller_follows_each_frames_cam(mode):
    frames, cams, masks = _corner_clip()
    cfg = VideoConfig(mode=mode)
    out = label_video_window(frames, cams, None, [TAG], cfg, ImageLabelConfig())
    assert [row.status for row in out] == [schema.LABELLED] * len(frames)
    centre = np.zeros(masks.shape[1:], bool)
    centre[36:60, 52:76] = True
    for row, truth in zip(out, masks, strict=True):
        # a centre prior would label the middle of the frame and leave the corner square
        # background (crf) or ignore where the cut found it (both)
        assert (row.mask[truth] == TAG).mean() > 0.6
        assert (row.mask[centre] == TAG).mean() < 0.1


def _parked_clip(n_frames: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red square parked in a textured scene before a camera on a tripod: nothing moves but the
    sensor noise. Frames T x 96 x 128 x 3 uint8, CAMs T x 1 x 12 x 16 hot on the square, true
    masks T x 96 x 128 bool."""
    rng = np.random.default_rng(1)
    height, width = 96, 128
    texture = rng.integers(40, 140, (height // 4, width // 4, 3)).astype(np.uint8)
    scene = np.repeat(np.repeat(texture, 4, 0), 4, 1)
    scene[..., 2] = np.minimum(scene[..., 2], 90)
    scene[36:60, 56:80] = np.repeat(np.repeat(rng.integers(190, 250, (6, 6, 3)), 4, 0), 4, 1)
    scene[36:60, 56:80, 1:] //= 4
    mask = np.zeros((height, width), bool)
    mask[36:60, 56:80] = True
    cam = np.zeros((1, 12, 16), np.float32)
    cam[0, 36 // 8 : 60 // 8, 56 // 8 : 80 // 8] = 1.0
    noise = rng.integers(-2, 3, (n_frames, height, width, 3))
    frames = np.clip(scene[None].astype(int) + noise, 0, 255).astype(np.uint8)
    return frames, np.stack([cam] * n_frames), np.stack([mask] * n_frames)


def test_frames_where_nothing_moved_get_the_per_frame_labeller():
    frames, cams, masks = _parked_clip()
    cut_only = label_video_window(
        frames, cams, None, [TAG], VideoConfig(per_frame_below=0.0), ImageLabelConfig()
    )
    # the cut alone calls a parked object background: the case the fallback is for
    for row, truth in zip(cut_only, masks, strict=True):
        assert (row.mask[truth] == TAG).mean() < 0.1
    out = label_video_window(frames, cams, None, [TAG], VideoConfig(), ImageLabelConfig())
    assert [row.status for row in out] == [schema.LABELLED] * len(frames)
    for row, truth in zip(out, masks, strict=True):
        assert (row.mask[truth] == TAG).mean() > 0.6
        assert (row.mask[~truth] == TAG).mean() < 0.1


def test_nothing_moved_reads_the_foreground_share():
    mask = np.zeros((100, 100), np.uint8)
    assert nothing_moved(mask, 0.002)
    mask[:2, :2] = TAG  # 0.04 % of the frame
    assert nothing_moved(mask, 0.002)
    mask[:10, :10] = TAG  # 1 %
    assert not nothing_moved(mask, 0.002)
    assert not nothing_moved(np.full((100, 100), schema.IGNORE, np.uint8), 0.002)
    assert not nothing_moved(np.zeros((100, 100), np.uint8), 0.0)


def test_per_frame_below_is_checked():
    with pytest.raises(ValueError, match="per_frame_below"):
        VideoConfig(per_frame_below=1.5)
