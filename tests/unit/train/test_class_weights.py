"""Median frequency class weights from masks (pipeline/train/class_weights.py)."""

import numpy as np
import pytest

from pipeline.train.class_weights import (
    class_pixel_counts,
    class_weights,
    logit_offset,
    median_frequency_weights,
    presence_shift,
)


def test_counts_skip_ignore_and_out_of_range_ids():
    a = np.array([[0, 0, 1, 255]], np.uint8)
    b = np.array([[0, 2, 2, 9]], np.uint8)  # 9 >= num_classes: not counted
    pixels, image_pixels = class_pixel_counts([a, b], 3)
    assert pixels.tolist() == [3, 1, 2]
    assert image_pixels.tolist() == [3 + 3, 3, 3]
    assert pixels.dtype == np.int64


def test_median_frequency_weights_are_median_over_frequency():
    pixels = np.array([80, 10, 5, 0])
    image_pixels = np.array([100, 20, 40, 0])  # freq 0.8, 0.5, 0.125; median 0.5
    weights = median_frequency_weights(pixels, image_pixels, max_weight=10.0)
    assert weights.dtype == np.float32
    assert weights.tolist() == pytest.approx([0.625, 1.0, 4.0, 1.0])  # absent class: 1


def test_weights_are_capped():
    weights = median_frequency_weights(np.array([100, 1, 100]), np.array([100, 100, 100]), 10.0)
    assert weights.tolist() == pytest.approx([1.0, 10.0, 1.0])


def test_no_labelled_pixels_gives_ones():
    masks = [np.full((4, 4), 255, np.uint8)]
    assert class_weights(masks, 3, "median_frequency", 10.0).tolist() == [1.0, 1.0, 1.0]


def test_method_none_and_unknown():
    assert class_weights([np.zeros((2, 2), np.uint8)], 2, "none", 10.0) is None
    with pytest.raises(ValueError, match="class_weighting"):
        class_weights([], 2, "inverse", 10.0)


def test_logit_offset_is_tau_times_the_log_prior_and_zero_for_absent_classes():
    pixels = np.array([96, 3, 0, 1], np.int64)
    offset = logit_offset(pixels, 0.5)
    assert offset.dtype == np.float32
    np.testing.assert_allclose(offset, 0.5 * np.log([0.96, 0.03, 1.0, 0.01]), rtol=1e-6)
    assert offset[0] > offset[1] > offset[3]  # the frequent class is pushed hardest in the loss
    assert offset[2] == 0.0  # never seen: plain cross-entropy keeps it down


def test_logit_offset_is_none_when_off():
    assert logit_offset(np.array([5, 1], np.int64), 0.0) is None


def test_presence_shift_moves_to_the_prior_of_a_class_known_present():
    a = np.array([[0, 0, 0, 1]], np.uint8)  # class 1 in one of three masks
    b = np.array([[0, 0, 2, 2]], np.uint8)
    c = np.array([[0, 0, 2, 255]], np.uint8)
    pixels, image_pixels = class_pixel_counts([a, b, c], 4)
    shift = presence_shift(pixels, image_pixels)
    total = 11  # labelled pixels of all masks
    assert shift.dtype == np.float32
    np.testing.assert_allclose(shift, [0.0, np.log(total / 4), np.log(total / 7), 0.0], rtol=1e-6)
    # a rare class known present gains more than a frequent one; background (in every mask) 0
    assert shift[1] > shift[2] > shift[0] == 0.0
    assert presence_shift(np.zeros(3, np.int64), np.zeros(3, np.int64)).tolist() == [0, 0, 0]
