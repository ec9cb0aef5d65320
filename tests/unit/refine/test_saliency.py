import numpy as np
from refine_scenes import iou, make_disc_scene

from pipeline.refine.saliency import (
    SaliencyConfig,
    barrier_distance,
    centre_prior,
    resize_maps,
    saliency_map,
)


def test_disc_is_more_salient_than_background():
    image, disc = make_disc_scene()
    sal = saliency_map(image, SaliencyConfig(work_side=64))
    assert sal.shape == (64, 64) and sal.dtype == np.float32
    assert sal.min() >= 0.0 and sal.max() <= 1.0
    assert sal[disc].mean() > 3 * sal[~disc].mean()
    top = sal > np.quantile(sal, 1 - disc.mean())
    assert iou(top, disc) > 0.7


def test_saliency_works_at_reduced_size_for_wide_images():
    image = np.zeros((40, 200, 3), np.uint8)
    image[10:30, 90:110] = 255
    sal = saliency_map(image, SaliencyConfig(work_side=50))
    assert sal.shape == (10, 50)
    assert np.unravel_index(sal.argmax(), sal.shape)[1] in range(20, 30)


def test_barrier_distance_is_zero_on_seeds_and_high_behind_a_barrier():
    img = np.zeros((1, 9, 9), np.float32)
    img[0, 2:7, 2:7] = 1.0  # a bright square
    img[0, 4, 4] = 0.0  # a dark hole inside it: reaching it needs crossing the barrier
    seeds = np.zeros((9, 9), bool)
    seeds[0], seeds[-1], seeds[:, 0], seeds[:, -1] = True, True, True, True
    dist = barrier_distance(img, seeds, passes=2)
    assert dist[seeds].max() == 0.0
    assert dist[4, 4] == 1.0 and dist[1, 1] == 0.0


def test_centre_prior_and_resize():
    prior = centre_prior(31, 41, 0.2)
    assert prior.argmax() == np.ravel_multi_index((15, 20), prior.shape)
    assert prior.max() <= 1.0 and prior.min() > 0.0
    maps = resize_maps(np.random.rand(3, 4, 5).astype(np.float32), 20, 25)
    assert maps.shape == (3, 20, 25) and maps.dtype == np.float32
    assert resize_maps(np.zeros((0, 4, 5), np.float32), 8, 8).shape == (0, 8, 8)
