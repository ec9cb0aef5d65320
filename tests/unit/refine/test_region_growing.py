import numpy as np
from refine_scenes import iou, make_disc_scene

from pipeline.refine.region_growing import DSRGConfig, class_probs, dsrg_labels, flood, grow_regions
from pipeline.refine.saliency import SaliencyConfig, resize_maps, saliency_map
from pipeline.schema import IGNORE


def test_class_probs_is_a_distribution_with_the_cam_choosing_the_tag():
    fg = np.full((3, 3), 0.8, np.float32)
    cams = np.zeros((2, 3, 3), np.float32)
    cams[0, 0], cams[1, 1] = 0.6, 0.3
    probs = class_probs(fg, cams)
    assert probs.shape == (3, 3, 3)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    assert probs[1, 0, 0] == np.float32(0.8) and probs[2, 1, 0] == np.float32(0.8)
    assert np.all(probs[1, 2] == np.float32(0.8))  # no CAM anywhere: the first tag
    assert np.all(probs[2, 2] == 0)


def test_regions_grow_only_from_seeds_through_confident_pixels():
    p = np.array([[0.95, 0.7, 0.05, 0.7, 0.7]], np.float32)
    probs = np.stack([1 - p, p])
    regions = grow_regions(probs, seed=0.9, grow=0.6)
    # the right pair is confident but holds no seed, so it stays unreached (-1)
    assert regions.tolist() == [[1, 1, 0, -1, -1]]


def test_flood_fills_unreached_pixels_from_neighbouring_regions():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, 5:] = 255
    regions = np.full((10, 10), -1, np.int32)
    regions[:, 0], regions[:, 9] = 0, 1
    out = flood(image, regions)
    assert (out[:, :4] == 0).all() and (out[:, 6:] == 1).all()  # incl. the image border
    assert (regions[:, 1:9] == -1).all()  # input untouched


def test_dsrg_labels_the_disc():
    image, disc = make_disc_scene()
    sal = resize_maps(saliency_map(image, SaliencyConfig(work_side=64))[None], 64, 64)[0]
    labels = dsrg_labels(image, sal, None, [3, 5], DSRGConfig())
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 3, IGNORE}
    assert iou(labels == 3, disc) > 0.75
    assert (labels == IGNORE).mean() < 0.15
