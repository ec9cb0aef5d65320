import numpy as np

from pipeline.refine.tag_regions import (
    TagRegionConfig,
    assign_regions,
    contrast_maps,
    live_tags,
    region_support,
)
from pipeline.schema import IGNORE


def _two_regions() -> np.ndarray:
    fg = np.zeros((4, 10), bool)
    fg[:, 0:3], fg[:, 6:10] = True, True  # left region 12 px, right region 16 px
    return fg


def test_live_tags_and_region_support():
    cams = np.zeros((2, 2, 2), np.float32)
    cams[0, 0, 0] = 1.0
    assert live_tags(cams, 0.05).tolist() == [True, False]
    regions = np.array([[1, 1], [2, 0]], np.int32)
    assert np.allclose(region_support(regions, 2, cams), [[0.5, 0.0], [0.0, 0.0]])


def test_a_region_takes_one_tag_even_where_its_cam_is_partial():
    fg = _two_regions()
    cams = np.zeros((2, 4, 10), np.float32)
    cams[0, 0, 0] = 1.0  # tag 8: one pixel of the left region
    cams[1, :, 8:10] = 1.0  # tag 15: half of the right region
    labels = assign_regions(fg, cams, [8, 15], TagRegionConfig())
    assert np.all(labels[:, 0:3] == 8) and np.all(labels[:, 6:10] == 15)
    assert np.all(labels[~fg] == 0)


def test_unsupported_region_goes_to_the_silent_tag():
    fg = _two_regions()
    cams = np.zeros((2, 4, 10), np.float32)
    cams[0, :, 0:3] = 1.0  # tag 8 fires on the left; tag 15 never fires
    labels = assign_regions(fg, cams, [8, 15], TagRegionConfig(silent_split=0.0))
    assert np.all(labels[:, 0:3] == 8) and np.all(labels[:, 6:10] == 15)


def test_weak_part_of_a_live_region_goes_to_the_silent_tag():
    fg = np.ones((2, 6), bool)
    cams = np.zeros((2, 2, 6), np.float32)
    cams[0, :, :3] = 1.0  # person seen on the left half; motorbike (silent) not at all
    labels = assign_regions(fg, cams, [15, 14], TagRegionConfig(silent_split=0.5))
    assert np.all(labels[:, :3] == 15) and np.all(labels[:, 3:] == 14)


def test_region_supported_by_two_live_tags_is_split_per_pixel():
    fg = np.ones((2, 6), bool)
    cams = np.zeros((2, 2, 6), np.float32)
    cams[0, :, :3], cams[1, :, 3:] = 1.0, 0.9
    labels = assign_regions(fg, cams, [15, 14], TagRegionConfig(split_ratio=0.6))
    assert np.all(labels[:, :3] == 15) and np.all(labels[:, 3:] == 14)
    whole = assign_regions(fg, cams, [15, 14], TagRegionConfig(split_ratio=1.0))
    assert np.all(whole == 15)


def test_unsupported_region_is_ignored_only_when_asked():
    fg = _two_regions()
    cams = np.zeros((2, 4, 10), np.float32)
    cams[0, :, 0:3], cams[1, 0, 0] = 1.0, 1.0  # both live; nothing on the right region
    kept = assign_regions(fg, cams, [8, 15], TagRegionConfig())
    ignored = assign_regions(fg, cams, [8, 15], TagRegionConfig(ignore_unsupported=True))
    assert np.all(kept[:, 6:10] == 8) and np.all(ignored[:, 6:10] == IGNORE)


def test_without_cam_everything_takes_the_first_tag():
    fg = _two_regions()
    assert set(np.unique(assign_regions(fg, None, [8, 15], TagRegionConfig()))) == {0, 8}


def test_contrast_prefers_the_tag_that_fires_on_the_region_over_one_that_fires_everywhere():
    fg = _two_regions()
    cams = np.full((2, 4, 10), 0.6, np.float32)  # tag 7 glows over the whole image (context)
    cams[0, :, 0:3] = 0.7
    cams[1] = 0.0
    cams[1, :, 6:10] = 0.5  # tag 2 fires only on the right region, and weaker
    plain = assign_regions(fg, cams, [7, 2], TagRegionConfig(contrast=False, split_ratio=1.0))
    contrast = assign_regions(fg, cams, [7, 2], TagRegionConfig(contrast=True, split_ratio=1.0))
    assert np.all(plain[:, 6:10] == 7)
    assert np.all(contrast[:, 6:10] == 2) and np.all(contrast[:, 0:3] == 7)


def test_contrast_maps_divide_by_each_mean_and_keep_the_largest_scale():
    cams = np.zeros((2, 1, 4), np.float32)
    cams[0] = [[0.2, 0.2, 0.2, 0.2]]  # mean 0.2
    cams[1] = [[0.4, 0.0, 0.0, 0.0]]  # mean 0.1
    out = contrast_maps(cams)
    assert np.allclose(out[0], 0.2) and np.allclose(out[1], [[0.8, 0, 0, 0]])
