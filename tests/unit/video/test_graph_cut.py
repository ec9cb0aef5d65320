import numpy as np

from pipeline.schema import IGNORE
from pipeline.video import segment
from pipeline.video.graph_cut import CutConfig, cut_volume, uncertain_band
from pipeline.video.motion import MotionConfig, shot_motion
from pipeline.video.segment import VideoSegConfig, segment_video


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def test_temporal_edges_fill_a_frame_with_no_evidence():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 16, 16, 3)).astype(np.uint8)
    unary = np.full((3, 16, 16), -2.0, np.float32)
    unary[:, 4:12, 4:12] = 2.0
    unary[1] = 0.0  # the middle frame has no evidence at all
    flows = np.zeros((2, 16, 16, 2), np.float32)
    fg = cut_volume(unary, images, flows, CutConfig(spatial_weight=0.5, temporal_weight=3.0))
    assert fg[1, 4:12, 4:12].all() and not fg[1, :4].any()
    alone = cut_volume(unary[1:2], images[1:2], None, CutConfig(spatial_weight=0.5))
    assert not alone.any()  # without temporal edges the tie goes to background


def test_uncertain_band_is_thin_and_only_where_unaries_are_weak():
    fg = np.zeros((20, 20), bool)
    fg[5:15, 5:15] = True
    unary = np.where(fg, 3.0, -3.0).astype(np.float32)
    unary[:, :10] *= 0.1  # weak on the left half
    band = uncertain_band(fg, unary, CutConfig(ignore_margin=1.0, ignore_band_px=1))
    assert band[:, :10].any() and not band[:, 10:].any()
    assert not band[7:13, 7:13].any() and not band[:3].any()  # only next to the boundary


def test_motion_ignores_camera_pan(clip):
    frames, masks = clip
    motion = shot_motion(np.stack(frames), MotionConfig())
    assert motion.prob.shape == (len(frames), *frames[0].shape[:2])
    inside = np.mean([p[m].mean() for p, m in zip(motion.prob, masks, strict=True)])
    outside = np.mean([p[~m].mean() for p, m in zip(motion.prob, masks, strict=True)])
    assert inside > 0.5 > 0.2 > outside


def test_segment_video_recovers_the_moving_square(clip):
    frames, masks = clip
    cfg = VideoSegConfig(work_height=72)
    out = segment_video(frames, None, [7], np.ones(len(frames), bool), np.zeros(len(frames)), cfg)
    ious = [_iou((m == 7), g) for m, g in zip(out, masks, strict=True)]
    assert np.mean(ious) > 0.8, ious
    assert all(set(np.unique(m)) <= {0, 7, IGNORE} for m in out)
    assert np.mean([(m == IGNORE).mean() for m in out]) < 0.05


def test_masks_are_at_source_resolution_and_none_where_dropped(clip):
    frames, masks = clip
    keep = np.ones(len(frames), bool)
    keep[:2] = False
    out = segment_video(
        frames, None, [3], keep, np.zeros(len(frames)), VideoSegConfig(work_height=72)
    )
    assert out[0] is None and out[1] is None
    assert all(m.shape == frames[0].shape[:2] and m.dtype == np.uint8 for m in out[2:])
    assert np.mean([_iou(m == 3, g) for m, g in zip(out[2:], masks[2:], strict=True)]) > 0.6


def test_cams_choose_the_tag_of_each_region(clip):
    frames, masks = clip
    n = len(frames)
    left = np.zeros((2, 9, 12), np.float32)
    left[0, :, :6], left[1, :, 6:] = 0.9, 0.9  # tag 4 on the left half, tag 9 on the right
    out = segment_video(
        frames, [left] * n, [4, 9], np.ones(n, bool), np.zeros(n), VideoSegConfig(work_height=72)
    )
    first, last = out[0], out[-1]  # the square starts left and ends right of the middle
    assert (first[masks[0]] == 4).mean() > 0.7
    assert (last[masks[-1]] == 9).mean() > 0.5


def test_shot_boundary_splits_temporal_links(clip, monkeypatch):
    frames, _ = clip
    shots = np.array([0] * 6 + [1] * 6)
    seen = []

    def spy(unary, images, flows, cfg):
        seen.append((len(unary), None if flows is None else len(flows)))
        return real(unary, images, flows, cfg)

    real = segment.cut_volume
    monkeypatch.setattr(segment, "cut_volume", spy)
    out = segment_video(frames, None, [7], np.ones(12, bool), shots, VideoSegConfig(work_height=72))
    assert len(out) == 12 and all(m is not None for m in out)
    cuts_per_shot = VideoSegConfig().colour_rounds + 1  # GrabCut rounds cut each shot again
    assert seen == [(6, 5)] * (2 * cuts_per_shot)  # per-shot 3D cuts, no flow edge across shots
