import numpy as np

from pipeline.refine.shape import ShapeConfig, clean_foreground, drop_small_components, fill_holes


def ring(size: int = 40) -> np.ndarray:
    fg = np.zeros((size, size), bool)
    fg[10:30, 10:30] = True
    fg[15:25, 15:25] = False
    return fg


def test_enclosed_hole_is_filled():
    filled = fill_holes(ring(), max_fraction=0.5)
    assert filled[15:25, 15:25].all()
    assert not filled[:10].any()


def test_hole_larger_than_the_object_share_stays_open():
    assert not fill_holes(ring(), max_fraction=0.1)[20, 20]


def test_background_touching_the_border_is_never_filled():
    fg = np.zeros((20, 20), bool)
    fg[:, 5] = True
    fg[:, 15] = True
    assert not fill_holes(fg, max_fraction=10.0)[10, 10]


def test_specks_are_dropped_and_comparable_objects_kept():
    fg = np.zeros((60, 60), bool)
    fg[5:25, 5:25] = True  # 400 px
    fg[30:45, 30:45] = True  # 225 px: a second object
    fg[50:52, 50:52] = True  # 4 px speck
    out = drop_small_components(fg, min_fraction=0.1)
    assert out[5:25, 5:25].all() and out[30:45, 30:45].all()
    assert not out[50:52, 50:52].any()


def test_clean_foreground_keeps_empty_frames_empty():
    fg = np.zeros((8, 8), bool)
    assert not clean_foreground(fg, ShapeConfig()).any()
