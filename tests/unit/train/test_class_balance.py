"""Repeat-factor sampling of training sources (pipeline.train.class_balance)."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.train.class_balance import repeat_factors, repeated


def test_rare_tags_repeat_by_the_square_root_of_their_shortfall():
    # 2 tags -> t = 1/2; "cat" in 1 of 10 samples: sqrt(0.5 / 0.1) = 2.24 -> 2; "dog" in 9: 1
    tags = [["dog"]] * 9 + [["cat"]]
    assert repeat_factors(tags, [1] * 10) == [1] * 9 + [2]
    # a source takes its rarest tag's factor; untagged sources (negatives) appear once
    tags = [["dog"]] * 48 + [["dog", "cat"], []]
    assert repeat_factors(tags, [1] * 50)[-2:] == [round(math.sqrt(0.5 / (1 / 50))), 1]


def test_video_frames_count_as_samples_of_the_videos_tags():
    # one video of 30 frames tagged car against 10 images of bird: car is the common class
    factors = repeat_factors([["car"]] + [["bird"]] * 10, [30] + [1] * 10)
    assert factors[0] == 1 and set(factors[1:]) == {round(math.sqrt(0.5 / (10 / 40)))}


def test_balanced_classes_and_empty_input_repeat_nothing():
    assert repeat_factors([["a"], ["b"], ["a", "b"]], [1, 1, 1]) == [1, 1, 1]
    assert repeat_factors([[], []], [1, 1]) == [1, 1]
    with pytest.raises(ValueError, match="sample counts"):
        repeat_factors([["a"]], [1, 2])


def test_repeated_lists_each_source_its_factor_times_in_order():
    sources = [{"uri": "a"}, {"uri": "b"}]
    assert [s["uri"] for s in repeated(sources, [1, 3])] == ["a", "b", "b", "b"]


def test_balanced_sources_follows_the_config(tmp_path):
    from pipeline.train.config import SegmenterTrainConfig
    from pipeline.train.segmenter import balanced_sources

    sources = [
        {"uri": f"u{i}", "kind": "image", "tags": json.dumps(["dog"]), "frames": "[-1]"}
        for i in range(9)
    ] + [{"uri": "c", "kind": "image", "tags": json.dumps(["cat"]), "frames": "[-1]"}]
    assert balanced_sources(sources, SegmenterTrainConfig(class_balance="none")) == sources
    assert SegmenterTrainConfig().class_balance == "repeat"
    out = balanced_sources(sources, SegmenterTrainConfig(class_balance="repeat"))
    assert len(out) == 11 and [s["uri"] for s in out].count("c") == 2
    with pytest.raises(ValueError, match="class_balance"):
        SegmenterTrainConfig(class_balance="oversample")
