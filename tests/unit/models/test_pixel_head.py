"""The pixel head of the image route's second pass: cell sampling, the fit, its maps, the mix."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline.models.pixel_head import (
    CellSamples,
    PixelHead,
    cell_samples,
    fit_pixel_head,
    head_maps,
    mix_into_cams,
)

LABELS = 4  # background + 3 classes


def test_cell_samples_keep_pure_cells_with_their_label():
    features = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)  # C=2 on a 2x3 grid
    mask = np.zeros((8, 12), np.uint8)
    mask[:4, 4:8] = 2  # cell (0, 1): all class 2
    mask[4:, 8:] = 255  # cell (1, 2): all ignore
    mask[4:, :2] = 3  # cell (1, 0): half class 3, half background
    cells = cell_samples(features, mask, [2, 3], LABELS, purity=0.75, max_cells=100)
    kept = {tuple(f) for f in cells.features.astype(np.float32)}
    assert (features[:, 0, 1][0], features[:, 0, 1][1]) in kept  # the class-2 cell
    assert (features[:, 1, 2][0], features[:, 1, 2][1]) not in kept  # ignore is no label
    assert (features[:, 1, 0][0], features[:, 1, 0][1]) not in kept  # mixed cell
    assert len(cells.labels) == 4 and sorted(cells.labels.tolist()) == [0, 0, 0, 2]
    assert cells.allowed.shape == (4, LABELS)
    assert cells.allowed[0].tolist() == [True, False, True, True]  # background and the tags


def test_cell_samples_cap_and_reproducible_draw():
    features = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
    mask = np.zeros((32, 32), np.uint8)
    first = cell_samples(features, mask, [], LABELS, 0.75, max_cells=10, seed=5)
    again = cell_samples(features, mask, [], LABELS, 0.75, max_cells=10, seed=5)
    assert len(first.labels) == 10
    np.testing.assert_array_equal(first.features, again.features)


def _two_class_samples(rng, n=400):
    """Background cells near -1 on channel 0, class-2 cells near +1; channel 1 is noise."""
    labels = np.where(np.arange(n) % 2 == 0, 0, 2)
    features = rng.normal(size=(n, 2)) * 0.3
    features[:, 0] += np.where(labels == 2, 1.0, -1.0)
    allowed = np.zeros((n, LABELS), bool)
    allowed[:, [0, 2]] = True
    return CellSamples(features.astype(np.float16), labels, allowed, np.arange(n) // 20)


def test_fit_separates_the_classes_and_maps_follow_the_features():
    rng = np.random.default_rng(1)
    head = fit_pixel_head(_two_class_samples(rng), weight_decay=1e-3, steps=200)
    assert head.seen.tolist() == [True, False, True, False]
    grid = np.zeros((2, 1, 2), np.float32)
    grid[0, 0] = [-1.0, 1.0]  # a background-like cell, then a class-2-like cell
    maps = head_maps(head, grid, [2])
    assert maps.shape == (1, 1, 2) and maps.dtype == np.float32
    assert maps[0, 0, 0] < 0.2 and maps[0, 0, 1] > 0.8


def test_head_maps_are_a_softmax_over_background_and_the_tags():
    rng = np.random.default_rng(2)
    head = PixelHead(
        rng.normal(size=(LABELS, 3)).astype(np.float32),
        rng.normal(size=LABELS).astype(np.float32),
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
        np.ones(LABELS, bool),
    )
    features = rng.normal(size=(3, 4, 5)).astype(np.float16)
    two = head_maps(head, features, [1, 3])
    assert two.shape == (2, 4, 5)
    assert np.all(two.sum(0) < 1.0) and np.all(two >= 0)  # background takes the rest
    one = head_maps(head, features, [1])
    assert np.all(one[0] >= two[0] - 1e-6)  # fewer rivals, a larger share


def test_fit_needs_background_and_a_class():
    samples = _two_class_samples(np.random.default_rng(3))
    only_background = CellSamples(
        samples.features[samples.labels == 0],
        samples.labels[samples.labels == 0],
        samples.allowed[samples.labels == 0],
        samples.image[samples.labels == 0],
    )
    with pytest.raises(ValueError, match="background and at least one class"):
        fit_pixel_head(only_background, 1e-3, 10)


def test_mix_leaves_unseen_tags_and_averages_seen_ones():
    cams = np.stack([np.full((4, 4), 0.8), np.full((4, 4), 0.2)]).astype(np.float32)
    maps = np.stack([np.full((2, 2), 0.4), np.full((2, 2), 1.0)]).astype(np.float32)
    seen = np.array([True, True, True, False])
    mixed = mix_into_cams(cams, maps, [2, 3], seen, share=0.5)
    assert mixed.shape == cams.shape
    np.testing.assert_allclose(mixed[0], 0.6)  # seen: the mean of CAM and head
    np.testing.assert_allclose(mixed[1], 0.2)  # class 3 never seen: the CAM alone
    assert cams[0, 0, 0] == pytest.approx(0.8)  # the input is not changed


def test_head_round_trips_through_npz_and_rejects_bad_shapes():
    head = fit_pixel_head(_two_class_samples(np.random.default_rng(4)), 1e-3, 20)
    buffer = io.BytesIO()
    np.savez(buffer, **head.arrays())
    buffer.seek(0)
    with np.load(buffer) as arrays:
        again = PixelHead.from_arrays(arrays)
    for name, value in head.arrays().items():
        np.testing.assert_array_equal(getattr(again, name), value)
    broken = dict(head.arrays(), bias=np.zeros(LABELS + 1, np.float32))
    with pytest.raises(ValueError, match="bias"):
        PixelHead.from_arrays(broken)


def test_concat_numbers_images_and_min_images_leaves_rare_classes_out():
    rng = np.random.default_rng(5)
    samples = _two_class_samples(rng, n=40)  # every part: background and class 2 cells
    parts = [samples] * 3 + [
        CellSamples(
            samples.features[:4],
            np.array([0, 3, 0, 3]),
            np.ones((4, LABELS), bool),
            np.zeros(4, np.int64),
        )
    ]
    joined = CellSamples.concat(parts)
    assert joined.image.tolist() == [0] * 40 + [1] * 40 + [2] * 40 + [3] * 4
    assert joined.images_per_label(LABELS).tolist() == [4, 0, 3, 1]
    assert fit_pixel_head(joined, 1e-3, 5, min_images=1).seen.tolist() == [True, False, True, True]
    assert fit_pixel_head(joined, 1e-3, 5, min_images=3).seen.tolist() == [True, False, True, False]
