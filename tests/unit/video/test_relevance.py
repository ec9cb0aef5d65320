import numpy as np

from pipeline.video.relevance import RelevanceConfig, relevant_frames

CFG = RelevanceConfig(abs_threshold=0.5, rel_fraction=0.5, floor=0.05)


def test_relative_rule_drops_intro_shot_with_readable_reason():
    scores = np.array([0.05, 0.1, 0.09, 0.6, 0.62, 0.61], np.float32)
    shots = np.array([0, 0, 0, 1, 1, 1])
    keep, reasons = relevant_frames(scores, shots, CFG)
    assert keep.tolist() == [False] * 3 + [True] * 3
    assert reasons[3:] == [None] * 3
    assert "shot 0" in reasons[0] and "0.08" in reasons[0] and "0.61" in reasons[0]


def test_absolute_threshold_keeps_good_shots_even_next_to_a_better_one():
    scores = np.array([0.55, 0.55, 0.99, 0.99], np.float32)
    keep, _ = relevant_frames(scores, np.array([0, 0, 1, 1]), CFG)
    assert keep.all()  # 0.55 < 0.5 x 0.99 is false anyway; and 0.55 >= absolute 0.5


def test_dull_video_keeps_its_best_shot():
    scores = np.array([0.12, 0.1, 0.2, 0.22, 0.03, 0.04], np.float32)
    keep, reasons = relevant_frames(scores, np.array([0, 0, 1, 1, 2, 2]), CFG)
    assert keep[2:4].all() and keep[:2].all()  # 0.11 >= 0.5 x 0.21
    assert not keep[4:].any() and "floor" in reasons[4]


def test_video_below_floor_judges_its_shots_against_the_best_alone():
    scores = np.array([0.001, 0.002, 0.004, 0.003, 0.0, 0.0], np.float32)
    keep, reasons = relevant_frames(scores, np.array([0, 0, 1, 1, 2, 2]), CFG)
    assert keep.tolist() == [False, False, True, True, False, False]
    assert "best shot" in reasons[0] and "floor" not in reasons[4]


def test_video_below_floor_keeps_every_shot_that_scores_like_its_best():
    # a small object in several shots: each shot's mean is far under the floor, and alike
    scores = np.array([0.010, 0.012, 0.011, 0.013, 0.002, 0.001], np.float32)
    keep, _ = relevant_frames(scores, np.array([0, 0, 1, 1, 2, 2]), CFG)
    assert keep.tolist() == [True, True, True, True, False, False]


def test_floor_still_drops_weak_shots_when_the_best_passes_it():
    scores = np.array([0.04, 0.04, 0.07, 0.07], np.float32)
    keep, reasons = relevant_frames(scores, np.array([0, 0, 1, 1]), CFG)
    assert keep.tolist() == [False, False, True, True] and "floor" in reasons[0]


def test_floor_drops_everything_when_the_best_shot_is_not_spared():
    cfg = RelevanceConfig(floor=0.05, keep_best_shot=False)
    keep, reasons = relevant_frames(np.full(4, 0.01, np.float32), np.zeros(4, int), cfg)
    assert not keep.any() and all("floor" in r for r in reasons)


def test_frame_window_can_drop_part_of_a_shot():
    scores = np.array([0.9] * 6 + [0.0] * 6, np.float32)
    keep, _ = relevant_frames(scores, np.zeros(12, int), RelevanceConfig(frame_window=3))
    assert keep[:5].all() and not keep[7:].any()
