"""Simple to complex (pipeline.train.curriculum): which rows are simple, and the epoch phases."""

import json

import numpy as np
import pytest

from pipeline.train.curriculum import (
    dataset_for_epoch,
    foreground_regions,
    is_simple,
    median_confidence,
    simple_epoch_count,
    simple_masks,
    simple_sources,
    simplicity,
    total_steps,
)


def test_foreground_regions_count_components_and_skip_specks_and_ignore():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:12, 2:12] = 3
    assert foreground_regions(mask) == 1
    mask[20:30, 20:30] = 3
    assert foreground_regions(mask) == 2
    mask[20:30, 20:30] = 255  # ignore is not foreground
    mask[39, 39] = 5  # one pixel: a speck
    assert foreground_regions(mask) == 1


def test_simplicity_ranks_one_tag_one_region_and_confidence():
    assert simplicity(1, 0.9, 1) > simplicity(1, 0.5, 1) > simplicity(2, 0.9, 1)
    assert simplicity(1, None, 2) == 1.0


def test_is_simple_needs_all_three():
    assert is_simple(1, 0.8, 1, 0.7)
    assert not is_simple(2, 0.8, 1, 0.7)
    assert not is_simple(1, 0.6, 1, 0.7)
    assert not is_simple(1, 0.8, 2, 0.7)
    assert not is_simple(1, None, 1, 0.7)


def _row(mask, tags, confidence, status="labelled"):
    return {"status": status, "mask_uri": mask, "tags": tags, "confidence": confidence}


def test_simple_masks_cut_at_the_median_confidence():
    rows = [
        _row("a.png", ["cat"], 0.9),
        _row("b.png", ["cat"], 0.2),
        _row("c.png", ["cat", "dog"], 0.95),
        _row("d.png", ["dog"], 0.8),
        _row(None, ["dog"], None, status="filtered"),
    ]
    regions = {"a.png": 1, "b.png": 1, "c.png": 1, "d.png": 2}
    assert median_confidence(rows) == pytest.approx(0.85)
    assert simple_masks(rows, regions) == {"a.png"}  # d: two regions; c: two tags; b: unsure


def test_no_confidence_column_means_nothing_is_simple():
    rows = [_row("a.png", ["cat"], None)]
    assert simple_masks(rows, {"a.png": 1}) == set()


def test_a_video_is_simple_only_when_all_its_frames_are():
    sources = [
        {"uri": "v.mp4", "masks": json.dumps(["v/0.png", "v/8.png"])},
        {"uri": "i.jpg", "masks": json.dumps(["i.png"])},
    ]
    assert simple_sources(sources, {"v/0.png", "i.png"}) == [sources[1]]
    assert simple_sources(sources, {"v/0.png", "v/8.png", "i.png"}) == sources


def test_simple_epoch_count_reads_a_share_or_a_count():
    assert simple_epoch_count(0.25, 12) == 3
    assert simple_epoch_count(0.25, 1) == 1  # at least one
    assert simple_epoch_count(2, 12) == 2
    assert simple_epoch_count(20, 12) == 12


def test_the_epoch_number_picks_the_dataset_so_a_resume_continues_the_phase():
    assert [dataset_for_epoch(e, 2) for e in range(4)] == ["simple", "simple", "train", "train"]
    assert dataset_for_epoch(0, 0) == "train"


def test_total_steps_add_the_two_phases():
    assert total_steps(5, 20, 2, 6) == 2 * 5 + 4 * 20
    assert total_steps(5, 20, 0, 6) == 6 * 20
