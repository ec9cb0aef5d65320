import numpy as np
import pytest
import torch

from pipeline.cam import (
    appearance_features,
    bucketed,
    class_scores,
    compute_cams,
    images_per_pass,
    pixel_features,
    working_size,
)
from pipeline.cam_config import CamConfig
from pipeline.models.classifier import CamClassifier, normalize
from pipeline.models.config import ModelConfig

CFG = CamConfig(input_size=64, scales=(1.0,), flip=False, batch_size=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = CamClassifier(
        ModelConfig(backbone="resnet", depth=18, width=8, output_stride=16, num_classes=4)
    )
    with torch.no_grad():  # a random head: make every class fire somewhere
        net.classifier.weight.normal_(std=1.0)
    return net.eval()


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_working_size_keeps_aspect():
    assert working_size(100, 200, CFG) == (64, 128)
    assert working_size(300, 150, CFG, scale=0.5) == (64, 32)


def test_cam_shapes_ranges_and_scores(model):
    images = [_image(50, 100), _image(80, 80, 1), _image(50, 100, 2)]
    cams, scores = compute_cams(model, images, [[1, 3], [2], []], CFG)
    assert cams[0].shape == (2, 4, 8) and cams[1].shape == (1, 4, 4) and cams[2].shape == (0, 4, 8)
    assert all(c.dtype == np.float32 for c in cams)
    for cam in cams[:2]:
        assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
        peaks = cam.reshape(len(cam), -1).max(axis=1)  # 1, or 0 where the class never fires
        assert np.all(np.isclose(peaks, 1.0, atol=1e-5) | (peaks == 0))
    assert np.isclose(cams[0].max(), 1.0, atol=1e-5)
    assert scores[0].shape == (2,) and scores[2].shape == (0,)
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)


def test_tag_scores_match_class_scores(model):
    images = [_image(64, 64, 3), _image(64, 96, 4)]
    _, scores = compute_cams(model, images, [[1, 4], [2]], CFG)
    all_scores = class_scores(model, images, CFG)
    assert all_scores.shape == (2, 4) and all_scores.dtype == np.float32
    assert np.allclose(scores[0], all_scores[0, [0, 3]], atol=1e-5)
    assert np.allclose(scores[1], all_scores[1, [1]], atol=1e-5)


def test_batching_does_not_change_results(model):
    images = [_image(64, 64, s) for s in range(5)]
    tags = [[1, 2]] * 5
    one, _ = compute_cams(model, images, tags, CamConfig(input_size=64, flip=False, batch_size=1))
    many, _ = compute_cams(model, images, tags, CamConfig(input_size=64, flip=False, batch_size=5))
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(one, many, strict=True))


def test_flip_makes_cams_mirror_symmetric(model):
    image = _image(64, 96, 5)
    cfg = CamConfig(input_size=64, flip=True)
    cam, _ = compute_cams(model, [image], [[1, 2, 3]], cfg)
    cam_mirror, _ = compute_cams(model, [image[:, ::-1].copy()], [[1, 2, 3]], cfg)
    assert np.allclose(cam[0], cam_mirror[0][:, :, ::-1], atol=1e-4)
    plain, _ = compute_cams(model, [image], [[1, 2, 3]], CFG)
    assert not np.allclose(cam[0], plain[0], atol=1e-3)


def test_multiscale_keeps_the_scale_one_resolution(model):
    image = _image(60, 90, 6)
    cfg = CamConfig(input_size=64, scales=(0.5, 1.0, 1.5), flip=True)
    cams, scores = compute_cams(model, [image], [[2]], cfg)
    single, _ = compute_cams(model, [image], [[2]], CFG)
    assert cams[0].shape == single[0].shape == (1, 4, 6)
    assert 0 <= scores[0][0] <= 1


def test_bad_inputs_are_refused(model):
    with pytest.raises(ValueError, match="outside"):
        compute_cams(model, [_image(32, 32)], [[0]], CFG)
    with pytest.raises(ValueError, match="uint8"):
        compute_cams(model, [np.zeros((32, 32), np.uint8)], [[1]], CFG)
    with pytest.raises(ValueError, match="tag lists"):
        compute_cams(model, [_image(32, 32)], [], CFG)


def test_size_buckets_put_similar_shapes_in_one_batch_without_changing_maps(model):
    images = [_image(60, 100, 7), _image(64, 96, 8), _image(66, 90, 9)]
    buckets = CamConfig(input_size=64, scales=(1.0,), flip=False, batch_size=4, size_bucket=32)
    assert {bucketed(im, buckets).shape for im in images} == {(64, 96, 3)}
    assert bucketed(images[0], CFG) is images[0]  # size_bucket 0 (the default): exact sizes
    tags = [[1, 2]] * 3
    alone = [
        compute_cams(model, [im], [t], buckets)[0][0] for im, t in zip(images, tags, strict=True)
    ]
    together, _ = compute_cams(model, images, tags, buckets)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(alone, together, strict=True))
    exact, _ = compute_cams(model, images, tags, CFG)
    assert exact[0].shape == (2, 4, 7) and together[0].shape == (2, 4, 6)


def test_negative_size_bucket_is_refused():
    with pytest.raises(ValueError, match="size_bucket"):
        CamConfig(size_bucket=-1)


def _prior_for(model, member_row: int = 339):
    from pipeline.models.imagenet_prior import PriorHead

    torch.manual_seed(1)
    fc = torch.zeros(1000, model.backbone.out_channels)
    fc[member_row] = torch.randn(model.backbone.out_channels)  # "sorrel" reads random features
    bias = torch.zeros(1000)
    bias[member_row] = 10.0  # and is the likely ImageNet class
    return PriorHead(fc, bias, ["background", "horse", "person", "ball", "cat"])


def test_prior_fuses_maps_and_lifts_scores_only_for_classes_that_have_one(model):
    prior = _prior_for(model)
    images = [_image(50, 100, 3), _image(64, 64, 4)]
    tags = [[1, 2, 3], [2]]
    plain, plain_scores = compute_cams(model, images, tags, CFG)
    fused, fused_scores = compute_cams(model, images, tags, CFG, prior=prior)
    assert not np.allclose(fused[0][0], plain[0][0])  # horse: has ImageNet members
    np.testing.assert_allclose(fused[0][1:], plain[0][1:], atol=1e-6)  # person, ball: none
    np.testing.assert_allclose(fused[1], plain[1], atol=1e-6)
    assert np.isclose(fused[0][0].max(), 1.0, atol=1e-5) and fused[0][0].min() >= 0
    assert fused_scores[0][0] >= plain_scores[0][0] and fused_scores[0][0] > 0.5
    np.testing.assert_allclose(fused_scores[0][1:], plain_scores[0][1:], atol=1e-6)


def test_prior_is_loaded_only_for_an_unchanged_imagenet_backbone():
    from pipeline.models.imagenet_prior import load_prior
    from pipeline.models.pretrained import load_backbone_weights

    net = CamClassifier(ModelConfig(num_classes=2))
    assert load_prior(net.backbone, "efficientnet_lite0", ["background", "horse"]) is None  # random
    load_backbone_weights(net.backbone, "efficientnet_lite0")
    names = ["background", "horse", "person"]
    assert load_prior(net.backbone, "efficientnet_lite0", names) is not None
    assert load_prior(net.backbone, "efficientnet_lite0", ["background", "ball"]) is None
    with torch.no_grad():
        net.backbone._conv_stem.weight.add_(0.01)  # a fine-tuned backbone
    assert load_prior(net.backbone, "efficientnet_lite0", names) is None
    assert load_prior(net.backbone, "resnet", names) is None


def test_images_per_pass_auto_is_two_on_a_cpu_and_eight_on_a_gpu_unless_set():
    assert images_per_pass(CamConfig(), "cpu") == 2
    assert images_per_pass(CamConfig(), "cuda") == 8
    assert images_per_pass(CamConfig(batch_size=5), "cpu") == 5


@pytest.mark.parametrize("bad", [0, -1, "many", True, 2.5])
def test_cam_batch_size_must_be_a_positive_integer_or_auto(bad):
    with pytest.raises(ValueError, match="batch_size"):
        CamConfig(batch_size=bad)


def test_appearance_features_are_the_stride_8_features_of_each_image_alone(model):
    cfg = CamConfig(input_size=64, size_bucket=32)
    images = [_image(80, 120, seed) for seed in range(3)] + [_image(64, 64, 9)]
    features = appearance_features(model, images, cfg)
    for image, got in zip(images, features, strict=True):
        x = normalize(torch.from_numpy(bucketed(image, cfg)[None]), model.input_stats)
        size = working_size(*image.shape[:2], cfg)
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
        with torch.inference_mode():
            want = model.backbone.forward_to_level(x, 1)[0]
        assert got.dtype == np.float16 and got.shape == tuple(want.shape)
        assert got.shape[1:] == tuple(-(-s // 8) for s in size)
        np.testing.assert_allclose(got.astype(np.float32), want.numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("flip", [False, True])
def test_cams_hand_on_their_own_pass_features_equal_to_a_separate_pass(model, flip):
    cfg = CamConfig(input_size=64, scales=(1.0, 1.5), flip=flip, batch_size=2, layer_cam=False)
    images = [_image(80, 120, seed) for seed in range(3)]
    kept: list = []
    cams, _ = compute_cams(model, images, [[1]] * 3, cfg, appearance=kept)
    plain, _ = compute_cams(model, images, [[1]] * 3, cfg)
    for a, b in zip(cams, plain, strict=True):
        np.testing.assert_array_equal(a, b)  # handing the features on changes no map
    separate = appearance_features(model, images, cfg)
    assert len(kept) == 3
    for got, want in zip(kept, separate, strict=True):
        np.testing.assert_array_equal(got, want)


def test_cams_with_the_layer_cam_still_hand_on_stride_8_features(model):
    cfg = CamConfig(input_size=64, scales=(1.0,), flip=False, batch_size=2, layer_cam=True)
    images = [_image(80, 120, seed) for seed in range(2)]
    kept: list = []
    compute_cams(model, images, [[1]] * 2, cfg, appearance=kept)
    for got, want in zip(kept, appearance_features(model, images, cfg), strict=True):
        np.testing.assert_array_equal(got, want)


def test_pixel_features_stack_levels_on_the_stride_16_grid(model):
    cfg = CamConfig(input_size=64, flip=False, batch_size=2)
    images = [_image(80, 120, 5), _image(64, 64, 6)]
    features = pixel_features(model, images, cfg)
    channels = sum(model.backbone.level_channels[1:])  # stride 8, 16 and the last level
    for image, got in zip(images, features, strict=True):
        size = working_size(*image.shape[:2], cfg)
        assert got.dtype == np.float16
        assert got.shape == (channels, *(-(-s // 16) for s in size))
    x = normalize(torch.from_numpy(images[1][None]), model.input_stats)
    with torch.inference_mode():
        stride16 = model.backbone.forward_levels(x)[2][0]
    width8 = model.backbone.level_channels[1]
    got16 = features[1][width8 : width8 + stride16.shape[0]].astype(np.float32)
    np.testing.assert_allclose(got16, stride16.numpy(), rtol=1e-2, atol=1e-2)


def test_pixel_features_with_flip_are_mirror_symmetric(model):
    cfg = CamConfig(input_size=64, flip=True, batch_size=2)
    image = _image(64, 96, 7)
    (plain,), (mirrored,) = (pixel_features(model, [im], cfg) for im in (image, image[:, ::-1]))
    np.testing.assert_allclose(
        plain.astype(np.float32), mirrored[..., ::-1].astype(np.float32), rtol=1e-2, atol=1e-2
    )


@pytest.mark.parametrize(
    ("flip", "scales", "layer_cam"),
    [(True, (1.0,), True), (False, (1.0, 1.5), False), (True, (1.5,), True)],
)
def test_cams_hand_on_pixel_features_equal_to_a_separate_pass(model, flip, scales, layer_cam):
    cfg = CamConfig(input_size=64, scales=scales, flip=flip, batch_size=2, layer_cam=layer_cam)
    images = [_image(80, 120, seed) for seed in range(3)]
    kept: list = []
    appearance: list = []
    cams, _ = compute_cams(model, images, [[1]] * 3, cfg, appearance=appearance, pixel=kept)
    plain, _ = compute_cams(model, images, [[1]] * 3, cfg)
    for a, b in zip(cams, plain, strict=True):
        np.testing.assert_array_equal(a, b)  # handing the features on changes no map
    for got, want in zip(appearance, appearance_features(model, images, cfg), strict=True):
        np.testing.assert_array_equal(got, want)
    separate = pixel_features(model, images, cfg)
    assert len(kept) == 3
    for got, want in zip(kept, separate, strict=True):
        assert got.shape == want.shape and got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-2)
