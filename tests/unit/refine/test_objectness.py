import numpy as np
from refine_scenes import iou, make_disc_scene, make_two_disc_scene

from pipeline.refine.objectness import (
    ObjectnessConfig,
    assign_tags,
    cam_additions,
    disagreement,
    foreground_prob,
    fuse_cues,
    objectness_labels,
)
from pipeline.refine.saliency import SaliencyConfig, resize_maps, saliency_map
from pipeline.schema import IGNORE


def _sal(image: np.ndarray) -> np.ndarray:
    return resize_maps(saliency_map(image, SaliencyConfig(work_side=64))[None], *image.shape[:2])[0]


def test_foreground_area_is_clamped_by_the_size_prior():
    score = np.linspace(0, 1, 10000, dtype=np.float32).reshape(100, 100)
    cfg = ObjectnessConfig(min_area=0.1, max_area=0.3)
    share = (foreground_prob(score, cfg) > 0.5).mean()
    assert 0.1 - 1e-3 <= share <= 0.3 + 1e-3
    flat_peak = np.zeros((100, 100), np.float32)
    flat_peak[:2] = 1.0  # Otsu alone would keep only 2% of the image
    assert (foreground_prob(flat_peak, cfg) > 0.5).mean() >= 0.02


def test_cam_weight_is_a_knob():
    sal = np.zeros((4, 4), np.float32)
    cams = np.ones((2, 4, 4), np.float32)
    assert np.all(fuse_cues(sal, cams, 0.0) == 0)
    assert np.allclose(fuse_cues(sal, cams, 0.7), 0.7)
    assert np.all(fuse_cues(sal, None, 0.7) == 0)


def test_disc_is_labelled_with_the_tag_without_a_cam():
    image, disc = make_disc_scene()
    labels = objectness_labels(image, _sal(image), None, [13], ObjectnessConfig())
    assert labels.dtype == np.uint8 and labels.shape == disc.shape
    assert set(np.unique(labels)) <= {0, 13, IGNORE}
    assert iou(labels == 13, disc) > 0.8


def test_cam_decides_which_tag_each_object_gets():
    image, left, right = make_two_disc_scene()
    cams = np.zeros((2, 8, 12), np.float32)
    cams[0, 2:6, 2:5], cams[1, 2:6, 7:10] = 1.0, 1.0  # tag 15 on the left, tag 8 on the right
    cams = resize_maps(cams, 64, 96)
    labels = objectness_labels(image, _sal(image), cams, [15, 8], ObjectnessConfig())
    assert iou(labels == 15, left) > 0.6 and iou(labels == 8, right) > 0.6


def test_assign_tags_without_cam_uses_first_tag():
    fg = np.array([[True, False]])
    assert assign_tags(fg, None, [7, 9]).tolist() == [[7, 0]]
    cams = np.array([[[0.1, 0.9]], [[0.8, 0.0]]], np.float32)
    assert assign_tags(np.ones((1, 2), bool), cams, [7, 9]).tolist() == [[9, 7]]


def test_disagreement_only_where_a_live_cam_contradicts_saliency():
    labels = np.array([[7, 7, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.9, 0.4, 0.0]], np.float32)
    cams = np.array([[[0.5, 0.0, 0.95, 0.95]]], np.float32)
    cfg = ObjectnessConfig(cam_low=0.05, cam_high=0.8)
    assert disagreement(labels, prob, cams, [7], cfg).tolist() == [[False, True, True, False]]
    assert not disagreement(labels, prob, None, [7], cfg).any()
    assert not disagreement(labels, prob, np.zeros_like(cams), [7], cfg).any()  # silent CAM


def test_cam_additions_extend_the_foreground_only_where_asked():
    fg = np.array([[True, False, False, False]])
    prob = np.array([[0.9, 0.5, 0.5, 0.0]], np.float32)
    cams = np.array([[[1.0, 0.9, 0.3, 0.9]]], np.float32)
    assert cam_additions(fg, prob, cams, ObjectnessConfig(cam_add=0.8)).tolist() == [
        [False, True, False, False]
    ]
    assert not cam_additions(fg, prob, cams, ObjectnessConfig(cam_add=0.0)).any()


def test_silent_cam_does_not_erase_the_object():
    image, disc = make_disc_scene()
    silent = np.zeros((1, 8, 8), np.float32)  # the classifier never fires for this tag
    labels = objectness_labels(image, _sal(image), silent, [13], ObjectnessConfig(cam_low=0.05))
    assert iou(labels == 13, disc) > 0.8


def test_ignore_stays_near_the_object_boundary_without_a_cam():
    image, disc = make_disc_scene()
    labels = objectness_labels(image, _sal(image), None, [13], ObjectnessConfig(confidence=0.95))
    ignored = labels == IGNORE
    ys, xs = np.nonzero(ignored)
    radius = np.hypot(xs - 32, ys - 30)
    assert ignored.mean() < 0.2
    assert np.all(np.abs(radius - 13) < 8)
