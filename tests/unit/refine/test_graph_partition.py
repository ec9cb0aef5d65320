import numpy as np
import pytest

from pipeline.refine.graph_partition import (
    GraphPartitionConfig,
    partition,
    partition_tag,
    region_descriptor,
    tag_regions,
)
from pipeline.schema import IGNORE

OBJECT, CLUTTER = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _scene(with_clutter: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 20x20 mask with class 3 on the left (the object) and, optionally, on the right (clutter),
    and a 3x20x20 feature map whose channels tell the two apart."""
    mask = np.zeros((20, 20), np.uint8)
    features = np.zeros((3, 20, 20), np.float32)
    mask[4:16, 1:8] = 3
    features[:, :, :10] = OBJECT[:, None, None]
    if with_clutter:
        mask[4:16, 12:19] = 3
        features[:, :, 10:] = CLUTTER[:, None, None]
    return mask, features


def test_tag_regions_splits_components_and_drops_specks():
    mask = np.zeros((10, 10), np.uint8)
    mask[0:3, 0:3], mask[6:10, 6:10], mask[5, 0] = 2, 2, 2  # 9 px, 16 px, a 1 px speck
    mask[0, 9] = IGNORE
    regions = tag_regions(mask, 2, min_share=0.05)
    assert [int(r.sum()) for r in regions] == [16, 9]
    assert tag_regions(mask, 7, 0.0) == []


def test_region_descriptor_is_the_normalised_masked_mean():
    features = np.zeros((2, 4, 4), np.float32)
    features[0, :, :2], features[1, :, 2:] = 3.0, 5.0
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    assert np.allclose(region_descriptor(features, left), [1.0, 0.0])
    whole = np.ones((8, 8), bool)
    assert np.allclose(region_descriptor(features, whole), np.array([3.0, 5.0]) / np.hypot(3, 5))


def test_partition_keeps_what_the_images_share():
    # four images show the object; two of them also hold a clutter region unlike the rest
    descriptors = np.stack([OBJECT, OBJECT, CLUTTER, OBJECT, CLUTTER, OBJECT]).astype(np.float32)
    descriptors[:, 2] = 0.1  # every pair a little alike, so the graph is connected
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    image_of = np.array([0, 1, 1, 2, 2, 3])
    assert partition(descriptors, image_of).tolist() == [True, True, False, True, False, True]


def test_every_image_keeps_its_most_agreeing_region():
    descriptors = np.stack([OBJECT, OBJECT, CLUTTER + 0.1 * OBJECT]).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    keep = partition(descriptors, np.array([0, 1, 2]))  # image 2 has only the odd region
    assert keep.all()
    assert partition(np.zeros((0, 3), np.float32), np.zeros(0, int)).tolist() == []


def test_partition_tag_ignores_the_dropped_regions_only():
    scenes = [_scene(with_clutter=i % 2 == 1) for i in range(4)]
    masks, features = [m for m, _ in scenes], [f for _, f in scenes]
    for f in features:
        f[2] = 0.1
    out = partition_tag(masks, features, cls=3, cfg=GraphPartitionConfig(min_images=3))
    for (mask, _), new in zip(scenes, out, strict=True):
        assert (new[:, :10] == mask[:, :10]).all()  # the object stays
        assert ((new[:, 10:] == IGNORE) == (mask[:, 10:] == 3)).all()  # clutter -> ignore
    assert masks[1][4, 12] == 3  # inputs untouched


@pytest.mark.parametrize("images", [1, 2])
def test_too_few_images_leave_the_masks_as_they_are(images):
    scenes = [_scene(with_clutter=True) for _ in range(images)]
    out = partition_tag([m for m, _ in scenes], [f for _, f in scenes], 3, GraphPartitionConfig())
    assert all((new == mask).all() for new, (mask, _) in zip(out, scenes, strict=True))
