"""predict: a whole collection -> label set that evaluate can read (no Ray)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline import checkpoint, schema
from pipeline.decode import DecodeConfig
from pipeline.evaluate.score import evaluate_labels
from pipeline.label_config import StageResources
from pipeline.models.config import DeepLabConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.predict_run import run_predict
from pipeline.sample_data import generate
from pipeline.settings import PredictConfig
from pipeline.tracking.registry import load_segmenter

TINY = DeepLabConfig(backbone="resnet", width=8, aspp_channels=8, num_classes=3)
ON_DRIVER = StageResources(actors=0)  # no Ray in unit tests; the actor pool is an integration test


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("coll")), images=3, videos=1)


def test_run_predict_writes_the_pseudo_label_format(collection, tmp_path):
    model_file = checkpoint.save_model(
        DeepLabV3(TINY),
        TINY,
        str(tmp_path / "model"),
        ["background", "ball", "box"],
        extra={"eval_long_side": 64},
    )
    loaded, info = load_segmenter(str(tmp_path / "model"))
    assert info["eval_long_side"] == 64 and info["classes"] == ("background", "ball", "box")
    assert not loaded.training
    out = str(tmp_path / "pred")
    run = run_predict(model_file, collection, out, PredictConfig(resources=ON_DRIVER))
    rows = pq.read_table(f"{out}/{schema.MANIFEST_NAME}").to_pylist()
    images = [r for r in rows if r[schema.KIND] == "image"]
    frames = [r for r in rows if r[schema.KIND] == "video"]
    assert len(images) == 3 and images[0][schema.FRAME_INDEX] is None
    assert images[0][schema.MASK_URI] == schema.mask_path(images[0][schema.ID])
    assert len(frames) == 32 and frames[5][schema.MASK_URI] == schema.mask_path("clip_00", 5)
    assert all(r[schema.STATUS] == schema.LABELLED for r in rows)
    assert run["counts"]["rows"] == 35
    assert json.loads((tmp_path / "pred" / schema.RUN_NAME).read_text())["collection"] == collection
    scores = evaluate_labels(out, collection)  # masks at source resolution, or this raises
    assert scores["images_scored"] == 3 and scores["frames_scored"] == 32 and scores["missing"] == 0


def test_unreadable_item_becomes_a_failed_row(collection, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(collection, broken)
    (broken / "media" / "img_001.jpg").write_bytes(b"not a jpeg")
    model_file = checkpoint.save_model(
        DeepLabV3(TINY), TINY, str(tmp_path / "m.pt"), ["background", "ball", "box"]
    )
    cfg = PredictConfig(
        long_side=32, decode=DecodeConfig(max_frames_per_video=2), resources=ON_DRIVER
    )
    run_predict(model_file, str(broken), str(tmp_path / "pred"), cfg)
    rows = pq.read_table(tmp_path / "pred" / schema.MANIFEST_NAME).to_pylist()
    failed = [r for r in rows if r[schema.STATUS] == schema.FAILED]
    assert [r[schema.ID] for r in failed] == ["img_001"] and failed[0][schema.REASON]


def test_tag_prior_shift_only_when_restricting_to_tags():
    from pipeline.predict import tag_prior_shift

    info = {"label_pixels": {"pixels": [6, 1, 4], "image_pixels": [11, 4, 7]}}
    restricted = PredictConfig(restrict_to_tags=True, prior_shift="presence")
    np.testing.assert_allclose(tag_prior_shift(info, restricted), np.log(11 / np.array([11, 4, 7])))
    unrestricted = PredictConfig(restrict_to_tags=False, prior_shift="presence")
    assert tag_prior_shift(info, unrestricted) is None  # no tags to condition on
    assert tag_prior_shift(info, PredictConfig(restrict_to_tags=True)) is None  # the default: none
    assert tag_prior_shift({}, restricted) is None  # a checkpoint from before the counts
    with pytest.raises(ValueError, match="prior_shift"):
        PredictConfig(prior_shift="bayes")


def test_restricted_predict_applies_the_checkpoints_presence_shift(collection, tmp_path):
    """A model whose raw logits favour background everywhere predicts an image's tag once the
    checkpoint's counts say the tag is rare (frames keep raw logits); run.json records the shift."""
    from pipeline.collection import read_collection

    items = read_collection(collection).items
    item = next(i for i in items if i.kind == "image")
    video = next(i for i in items if i.kind == "video")
    aspp = DeepLabConfig(
        backbone="resnet", width=8, aspp_channels=8, num_classes=3, head="deeplabv3"
    )
    model = DeepLabV3(aspp)
    with torch.no_grad():  # logits: background 2, the others 0, whatever the image
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    counts = {"pixels": [1000, 1, 1], "image_pixels": [1000, 2, 2]}
    model_file = checkpoint.save_model(
        model, aspp, str(tmp_path / "model"), ["background", "ball", "box"],
        extra={"eval_long_side": 32, "label_pixels": counts},
    )  # fmt: skip
    for shift, wins in (("none", schema.BACKGROUND), ("presence", item.tag_ids[0])):
        out = tmp_path / f"pred-{shift}"
        cfg = PredictConfig(resources=ON_DRIVER, restrict_to_tags=True, prior_shift=shift)
        run = run_predict(model_file, collection, str(out), cfg)
        mask = cv2.imread(str(out / schema.mask_path(item.id)), cv2.IMREAD_UNCHANGED)
        assert (mask == wins).all()
        frame = cv2.imread(str(out / schema.mask_path(video.id, 0)), cv2.IMREAD_UNCHANGED)
        assert (frame == schema.BACKGROUND).all()  # a frame is not known to show the video's tags
    expected = [np.log(1002 / 1000), np.log(1002 / 2), np.log(1002 / 2)]
    assert run["prior_shift"] == pytest.approx(expected, abs=1e-3)


def test_restriction_auto_follows_whether_the_collection_has_tags(collection):
    from dataclasses import replace

    from pipeline.collection import read_collection
    from pipeline.predict_run import resolve_restriction

    items = read_collection(collection).items
    assert any(item.tag_ids for item in items)
    assert PredictConfig().restrict_to_tags == "auto"
    assert resolve_restriction(PredictConfig(), items).restrict_to_tags is True
    untagged = [replace(item, tags=(), tag_ids=()) for item in items]
    assert resolve_restriction(PredictConfig(), untagged).restrict_to_tags is False
    assert (
        resolve_restriction(PredictConfig(restrict_to_tags=False), items).restrict_to_tags is False
    )
    with pytest.raises(ValueError, match="restrict_to_tags"):
        PredictConfig(restrict_to_tags="yes")


def test_cli_turns_the_restriction_on_and_off():
    from pipeline.cli import build_parser

    parser = build_parser()
    common = ["predict", "--model", "m.pt", "--collection", "c", "--out", "o"]
    assert parser.parse_args(common).restrict_to_tags is None  # the config decides (auto)
    assert parser.parse_args([*common, "--restrict-to-tags"]).restrict_to_tags is True
    assert parser.parse_args([*common, "--no-restrict-to-tags"]).restrict_to_tags is False


def test_predict_mask_crf_keeps_to_the_allowed_classes_and_none_is_the_plain_argmax():
    from pipeline.models.inference import segment
    from pipeline.predict import predict_mask

    torch.manual_seed(0)
    model = DeepLabV3(TINY).eval()
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    plain = predict_mask(model, image, 64, PredictConfig(refine="none"), (0, 2), None)
    np.testing.assert_array_equal(plain, segment(model, image, 64, allowed=(0, 2)))
    refined = predict_mask(model, image, 64, PredictConfig(crf_side=40), (0, 2), None)
    assert refined.shape == (48, 80) and refined.dtype == np.uint8
    assert set(np.unique(refined)) <= {0, 2}
    unrestricted = predict_mask(model, image, 64, PredictConfig(crf_side=40), None, None)
    assert unrestricted.shape == (48, 80) and unrestricted.max() <= 2
    with pytest.raises(ValueError, match="predict.refine"):
        PredictConfig(refine="densecrf")
    with pytest.raises(ValueError, match="crf_side"):
        PredictConfig(crf_side=8)
