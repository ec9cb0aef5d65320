import numpy as np

from pipeline.video import segment
from pipeline.video.segment import VideoSegConfig, cam_agreement, segment_video


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def _motion_square() -> np.ndarray:
    prob = np.full((2, 20, 20), 0.05, np.float32)
    prob[:, 5:15, 5:15] = 0.95
    return prob


def test_cams_on_context_get_no_weight():
    prob = _motion_square()
    cam = 1.0 - prob  # fires on the background (road, water), cold on the moving object
    cfg = VideoSegConfig()
    assert cam_agreement(cam, prob, cfg) < 0
    assert not segment._cam_term(cam, prob, cfg).any()


def test_agreeing_cams_push_the_cold_part_of_a_moving_region_to_background():
    prob = _motion_square()
    cam = np.zeros_like(prob)
    cam[:, 5:15, 5:10] = 1.0  # the class fires on the left half of the moving region only
    term = segment._cam_term(cam, prob, VideoSegConfig())
    assert term[:, 8, 7].min() > 0 > term[:, 8, 12].max()


def test_useless_cams_do_not_change_the_cut(clip):
    frames, masks = clip
    n = len(frames)
    cfg = VideoSegConfig(work_height=72)
    static = np.zeros((1, 9, 12), np.float32)
    static[0, 6:, :] = 1.0  # a CAM stuck on the bottom rows, unrelated to the moving square
    out = segment_video(frames, [static] * n, [7], np.ones(n, bool), np.zeros(n), cfg)
    assert np.mean([_iou(m == 7, g) for m, g in zip(out, masks, strict=True)]) > 0.8


def test_grabcut_rounds_refit_colour_and_keep_the_square(clip, monkeypatch):
    frames, masks = clip
    n = len(frames)
    calls = []
    real = segment.colour_llr

    def spy(small, fg_seed, bg_seed, cfg):
        calls.append(int(fg_seed.sum()))
        return real(small, fg_seed, bg_seed, cfg)

    monkeypatch.setattr(segment, "colour_llr", spy)
    cfg = VideoSegConfig(work_height=72, colour_rounds=2)
    out = segment_video(frames, None, [7], np.ones(n, bool), np.zeros(n), cfg)
    assert len(calls) == 3 and calls[1] > calls[0]  # the cut seeds more object pixels than motion
    assert np.mean([_iou(m == 7, g) for m, g in zip(out, masks, strict=True)]) > 0.8


def _two_tag_frame():
    """A foreground square; tag 7's CAM glows over the whole frame (context) and a little more on
    the square, tag 3's fires only on the square, and less."""
    fg = np.zeros((40, 40), bool)
    fg[10:20, 10:20] = True
    context = np.full((40, 40), 0.5, np.float32)
    context[fg] = 0.55
    object_only = np.where(fg, 0.5, 0.0).astype(np.float32)
    return fg, np.stack([object_only, context]), [3, 7]


def test_a_tag_glowing_over_context_does_not_take_the_object():
    fg, cams, tags = _two_tag_frame()
    unary = np.where(fg, 5.0, -5.0).astype(np.float32)  # confident cut: no uncertain band
    labels = segment._label_frame(fg, unary, cams, tags, VideoSegConfig())
    assert (labels[fg] == 3).all() and (labels[~fg] == 0).all()
    plain = segment._label_frame(fg, unary, cams, tags, VideoSegConfig(tag_contrast=False))
    assert (plain[fg] == 7).all()  # raw argmax: the context map wins
