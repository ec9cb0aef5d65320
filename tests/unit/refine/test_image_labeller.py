import dataclasses

import numpy as np
import pytest
from refine_scenes import iou, make_disc_scene

from pipeline.refine.image_labeller import METHODS, ImageLabelConfig, cam_crf_labels, label_image
from pipeline.refine.saliency import resize_maps
from pipeline.schema import IGNORE


def _disc_cam(size: int = 8) -> np.ndarray:
    cam = np.zeros((1, size, size), np.float32)
    cam[0, 2:6, 2:6] = 1.0
    return cam


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_disc(method):
    image, disc = make_disc_scene()
    labels = label_image(image, _disc_cam(), [13], ImageLabelConfig(method=method))
    assert labels.shape == (64, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 13, IGNORE}
    assert iou(labels == 13, disc) > 0.6
    assert (labels != IGNORE).mean() > 0.8  # ignore stays modest


@pytest.mark.parametrize("method", METHODS)
def test_negative_image_is_all_background(method):
    image, _ = make_disc_scene()
    labels = label_image(image, None, [], ImageLabelConfig(method=method))
    assert labels.shape == (64, 64) and labels.dtype == np.uint8 and not labels.any()


@pytest.mark.parametrize("method", METHODS)
def test_no_cam_still_labels_at_source_resolution(method):
    image, disc = make_disc_scene()
    big = np.repeat(np.repeat(image, 3, axis=0), 3, axis=1)  # 192 px: above work_side
    labels = label_image(big, None, [13], ImageLabelConfig(method=method, work_side=96))
    assert labels.shape == (192, 192)
    assert iou(labels == 13, np.repeat(np.repeat(disc, 3, axis=0), 3, axis=1)) > 0.4


def test_cam_crf_ignores_unsure_pixels_only():
    image, disc = make_disc_scene()
    cams = resize_maps(_disc_cam(), 64, 64)
    sure = cam_crf_labels(
        image, cams, [13], dataclasses.replace(ImageLabelConfig().cam_crf, confidence=0.0)
    )
    unsure = cam_crf_labels(
        image, cams, [13], dataclasses.replace(ImageLabelConfig().cam_crf, confidence=1.01)
    )
    assert IGNORE not in sure and (unsure == IGNORE).all()


def test_bad_inputs_are_rejected():
    image, _ = make_disc_scene()
    with pytest.raises(ValueError):
        ImageLabelConfig(method="nope")
    with pytest.raises(ValueError):
        label_image(image, np.zeros((2, 8, 8), np.float32), [13], ImageLabelConfig())


def test_cam_weight_moves_the_mask_towards_the_cam_and_conflicts_become_ignore():
    image, disc = make_disc_scene()
    cam = np.zeros((1, 8, 8), np.float32)
    cam[0, 0:3, 5:8] = 1.0  # evidence on plain background, top right
    target = resize_maps(cam, 64, 64)[0] > 0.5

    def labels(weight: float) -> np.ndarray:
        obj = dataclasses.replace(ImageLabelConfig().objectness, cam_weight=weight, cam_low=0.05)
        return label_image(image, cam, [13], ImageLabelConfig(method="objectness", objectness=obj))

    by_saliency, by_cam = labels(0.0), labels(0.9)
    assert iou(by_saliency != 0, disc) > 0.8
    assert (by_saliency[disc] == IGNORE).mean() > 0.5  # salient but the CAM is silent there
    assert ((by_cam == 13) & target).sum() > 4 * ((by_saliency == 13) & target).sum() + 10


def test_background_score_is_low_where_a_cam_fires_and_constant_without_power():
    from pipeline.refine.image_labeller import CamCRFConfig, background_score

    cams = np.zeros((2, 4, 4), np.float32)
    cams[0, 0, 0], cams[1, 0, 1] = 1.0, 0.5
    bg = background_score(cams, CamCRFConfig(bg_power=4.0))
    assert bg[0, 0] == 0.0 and bg[0, 1] == pytest.approx(0.5**4) and bg[3, 3] == 1.0
    flat = background_score(cams, CamCRFConfig(bg_power=0.0, bg_score=0.3))
    assert np.all(flat == np.float32(0.3))


def _two_level_map(low: float, high: float, share: float) -> np.ndarray:
    peak = np.full((40, 40), low, np.float32)
    peak[: int(40 * share)] = high
    return peak


@pytest.mark.parametrize("low, high", [(0.1, 0.9), (0.4, 0.95), (0.0, 0.3)])
def test_otsu_power_puts_the_background_crossing_between_the_two_cam_levels(low, high):
    from pipeline.refine.image_labeller import otsu_power

    peak = _two_level_map(low, high, 0.3)
    power = otsu_power(peak)
    bg_low, bg_high = (1 - low) ** power, (1 - high) ** power
    assert bg_low > low and bg_high < high  # background wins the low level, the CAM the high one


def test_otsu_background_adapts_where_a_fixed_power_cannot():
    from pipeline.refine.image_labeller import CamCRFConfig, background_score

    # a broad object map (0.6 on its body) and a diffuse small-object map (0.4 over the scene)
    broad, diffuse = _two_level_map(0.05, 0.6, 0.5)[None], _two_level_map(0.4, 1.0, 0.05)[None]
    otsu = CamCRFConfig()
    assert otsu.bg_power == "otsu"
    assert (background_score(diffuse, otsu) > diffuse[0])[20:].all()  # the scene is background
    assert (background_score(broad, otsu) < broad[0])[:20].all()  # the body stays foreground
    fixed = CamCRFConfig(bg_power=4.0)  # (1 - 0.4) ** 4 = 0.13: the scene goes to the object
    assert (background_score(diffuse, fixed) < diffuse[0])[20:].all()


def test_flat_cams_give_a_finite_background():
    from pipeline.refine.image_labeller import CamCRFConfig, background_score

    for value in (0.0, 1.0):
        bg = background_score(np.full((1, 8, 8), value, np.float32), CamCRFConfig())
        assert np.isfinite(bg).all() and bg.dtype == np.float32


@pytest.mark.parametrize("bad", ["otsu2", -1.0])
def test_bad_background_powers_are_rejected(bad):
    from pipeline.refine.image_labeller import CamCRFConfig

    with pytest.raises(ValueError, match="bg_power"):
        CamCRFConfig(bg_power=bad)


def _red_box_on_texture(sigma: float = 12.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A uniform red box on green-blue texture, and a CAM blob on its middle that fades to
    ~0.1 at the box's corners with sigma 12 (a CAM that misses the object's extremities)."""
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 1] = rng.integers(90, 200, (64, 64))
    image[..., 2] = rng.integers(60, 200, (64, 64))
    box = np.zeros((64, 64), bool)
    box[16:48, 12:52] = True
    image[box] = (200, 30, 30) + rng.integers(-10, 10, (box.sum(), 3))
    ys, xs = np.mgrid[0:64, 0:64]
    cam = np.exp(-((ys - 32.0) ** 2 + (xs - 32.0) ** 2) / (2 * sigma**2))[None].astype(np.float32)
    return image, box, cam


def test_grabcut_grows_a_short_cut_over_the_object():
    from pipeline.refine.image_labeller import CamCRFConfig, grabcut_grow

    image, box, cam = _red_box_on_texture()
    short = np.where(cam[0] > 0.6, 13, 0).astype(np.uint8)  # the CAM's core only
    grown = grabcut_grow(image, cam, short, [13], CamCRFConfig())
    assert iou(short == 13, box) < 0.4
    assert iou(grown == 13, box) > 0.9
    assert set(np.unique(grown)) <= {0, 13}
    assert np.array_equal(grown, grabcut_grow(image, cam, short, [13], CamCRFConfig()))


def test_grabcut_keeps_ignore_and_gives_new_pixels_the_strongest_tag():
    from pipeline.refine.image_labeller import CamCRFConfig, grabcut_grow

    image, box, cam = _red_box_on_texture()
    short = np.where(cam[0] > 0.6, 13, 0).astype(np.uint8)
    short[0:3, 0:3] = IGNORE
    other = np.where(np.arange(64)[None, :] >= 32, 0.5, 0.0) * cam[0]  # half the blob's height
    grown = grabcut_grow(image, np.stack([cam[0], other]), short, [13, 7], CamCRFConfig())
    assert (grown[0:3, 0:3] == IGNORE).all()
    assert not (grown == 7).any()  # tag 7's map never beats tag 13's


def test_cam_crf_runs_grabcut_on_the_crf_labels_unless_off():
    from pipeline.refine.image_labeller import grabcut_grow

    image, box, cam = _red_box_on_texture(sigma=9.0)  # a tighter map: the CRF keeps a sliver
    # which grows over the whole box only without the band (the box's far side lies beyond it)
    on = dataclasses.replace(ImageLabelConfig().cam_crf, grabcut_band=0)
    crf_only = cam_crf_labels(image, cam, [13], dataclasses.replace(on, grabcut_rounds=0))
    with_grabcut = cam_crf_labels(image, cam, [13], on)
    assert np.array_equal(with_grabcut, grabcut_grow(image, cam, crf_only, [13], on))
    assert iou(crf_only == 13, box) < 0.2 and iou(with_grabcut == 13, box) > 0.9


def test_grabcut_band_stops_a_small_object_flooding_a_scene_of_its_colour():
    """A small object on a wide floor of its colour, under a diffuse CAM (no pixel low enough to
    be sure background): unbounded, GrabCut takes the floor; with the band it stays near (the
    floor beyond the band is sure background, so the cut no longer takes the floor's colour)."""
    from pipeline.refine.image_labeller import CamCRFConfig, _distance_from, grabcut_grow

    rng = np.random.default_rng(0)
    image = np.zeros((96, 96, 3), np.uint8)
    image[..., 1] = rng.integers(90, 200, (96, 96))
    image[..., 2] = rng.integers(60, 200, (96, 96))
    image[40:] = (200, 30, 30) + rng.integers(-10, 10, (56, 96, 3))
    seed = np.zeros((96, 96), bool)
    seed[60:68, 44:52] = True
    cam = np.where(seed, 1.0, 0.3)[None].astype(np.float32)
    crf = np.where(seed, 13, 0).astype(np.uint8)
    reach = 0.15 * np.hypot(96, 96)
    unbounded = grabcut_grow(image, cam, crf, [13], CamCRFConfig(grabcut_band=0))
    banded = grabcut_grow(image, cam, crf, [13], CamCRFConfig(grabcut_band=0.15))
    far = _distance_from(seed) > reach
    floor = np.zeros((96, 96), bool)
    floor[40:] = True
    assert (unbounded == 13)[far & floor].mean() > 0.5  # the floor is flooded
    assert not (banded == 13)[far].any()
    assert (banded == 13)[seed].all()


@pytest.mark.parametrize(
    "bad",
    [
        {"grabcut_rounds": -1},
        {"grabcut_sure_bg": 0.9},
        {"grabcut_sure_fg": 1.5},
        {"grabcut_band": -0.1},
        {"grabcut_band": 1.5},
    ],
)
def test_bad_grabcut_settings_are_rejected(bad):
    from pipeline.refine.image_labeller import CamCRFConfig

    with pytest.raises(ValueError, match="grabcut"):
        CamCRFConfig(**bad)
