"""The fused actor of CPU clusters (decode, CAM, refine and write in one process) gives what the four
stages give one after the other, row for row and mask for mask; work units (no Ray: the adapters are
plain callables)."""

import numpy as np
import pytest

from pipeline import schema
from pipeline.cam import working_size
from pipeline.checkpoint import save_model
from pipeline.cluster.io_stages import decode_batch, item_row, work_units, write_batch
from pipeline.cluster.stages import CamStage, LabelItemsStage, RefineStage
from pipeline.collection import read_collection
from pipeline.label_config import PseudoLabelConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig
from pipeline.models.pixel_head import PixelHead, head_maps, mix_into_cams
from pipeline.rows import dumps, iter_rows, loads, to_batch
from pipeline.sample_data import generate


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = generate(str(tmp_path_factory.mktemp("coll")), images=3, videos=1)
    collection = read_collection(root)
    return [item_row(item) for item in collection.items], collection.classes


def masks_of(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def without_timings(batch) -> list[dict]:
    rows = [
        {k: v for k, v in r.items() if not k.startswith(schema.TIMING_PREFIX)}
        for r in iter_rows(batch)
    ]
    return sorted(rows, key=lambda r: (r[schema.SOURCE_INDEX], str(r[schema.FRAME_INDEX])))


@pytest.mark.parametrize("with_model", [True, False])
def test_fused_actor_matches_the_four_stages_one_after_the_other(items, tmp_path, with_model):
    rows, classes = items
    cfg = PseudoLabelConfig()
    model_uri = None
    if with_model:
        model_cfg = ModelConfig(backbone="resnet", width=8, num_classes=len(classes) - 1)
        torch_model = CamClassifier(model_cfg)
        model_uri = save_model(torch_model, model_cfg, str(tmp_path / "clf"), list(classes))
    apart_out, fused_out = tmp_path / "apart", tmp_path / "fused"
    decoded = decode_batch(to_batch(rows, ()), cfg.decode)
    refined = RefineStage(cfg)(CamStage(model_uri, cfg.cam)(decoded))
    apart = write_batch(refined, str(apart_out), save_cams=True)
    units = to_batch([{schema.ITEMS: dumps(u)} for u in work_units(rows, 2)], ())
    cam_kwargs = {"model_uri": model_uri, "cfg": cfg.cam}
    fused = LabelItemsStage(cam_kwargs, cfg, str(fused_out), frozenset())(units)
    assert without_timings(fused) == without_timings(apart)
    assert len(without_timings(fused)) > 4  # 3 images and the video's frames
    assert masks_of(fused_out) == masks_of(apart_out) and masks_of(fused_out)
    for stage in ("decode", "cam", "refine", "write"):
        assert f"{schema.TIMING_PREFIX}{stage}" in fused


def test_work_units_put_each_video_alone_and_first_then_images_a_few_at_a_time():
    rows = [{schema.ID: f"i{i}", schema.KIND: schema.KIND_IMAGE} for i in range(5)] + [
        {schema.ID: "v", schema.KIND: schema.KIND_VIDEO},
        {schema.ID: "bad", schema.KIND: ""},
    ]
    units = work_units(rows, 2)
    assert [[r[schema.ID] for r in u] for u in units] == [
        ["v"],
        ["i0", "i1"],
        ["i2", "i3"],
        ["i4", "bad"],
    ]
    assert work_units([], 8) == []


def _cam_stage_rows(items, tmp_path) -> tuple[PseudoLabelConfig, list[dict]]:
    """The default config and the CAM stage's output rows for the items (a small random ResNet)."""
    rows, classes = items
    cfg = PseudoLabelConfig()
    model_cfg = ModelConfig(backbone="resnet", width=8, num_classes=len(classes) - 1)
    model_uri = save_model(CamClassifier(model_cfg), model_cfg, str(tmp_path / "c"), list(classes))
    decoded = decode_batch(to_batch(rows, ()), cfg.decode)
    return cfg, list(iter_rows(CamStage(model_uri, cfg.cam)(decoded)))


def test_cam_stage_averages_the_layer_cam_into_image_maps_only(items, tmp_path):
    cfg, out = _cam_stage_rows(items, tmp_path)
    kinds = set()
    for row in out:
        height, width = working_size(*row[schema.FRAMES][0].shape[:2], cfg.cam)
        stride = 32 if row[schema.KIND] == schema.KIND_VIDEO else 16  # frames: the plain CAMs
        assert row[schema.CAM].shape[-2:] == (-(-height // stride), -(-width // stride))
        kinds.add(row[schema.KIND])
    assert kinds == {schema.KIND_IMAGE, schema.KIND_VIDEO}


def test_cam_stage_gives_every_frame_its_stride_8_features(items, tmp_path):
    cfg, out = _cam_stage_rows(items, tmp_path)
    for row in out:
        frames, features = row[schema.FRAMES], row[schema.FEATURES]
        height, width = working_size(*frames[0].shape[:2], cfg.cam)
        assert features.dtype == np.float16 and features.shape[1] > 0
        assert features.shape[0] == len(frames)
        assert features.shape[2:] == (-(-height // 8), -(-width // 8))


def test_cam_stage_mixes_a_pixel_head_into_image_maps_only(items, tmp_path):
    rows, classes = items
    cfg = PseudoLabelConfig()
    model_cfg = ModelConfig(backbone="resnet", width=8, num_classes=len(classes) - 1)
    model_uri = save_model(CamClassifier(model_cfg), model_cfg, str(tmp_path / "c"), list(classes))
    decoded = decode_batch(to_batch(rows, ()), cfg.decode)
    sampled = list(iter_rows(CamStage(model_uri, cfg.cam, keep_pixel_features=True)(decoded)))
    features = {
        r[schema.ID]: r[schema.PIXEL_FEATURES][0]
        for r in sampled
        if r[schema.KIND] == schema.KIND_IMAGE
    }
    assert len(features) == 3
    videos = [r for r in sampled if r[schema.KIND] == schema.KIND_VIDEO]
    assert videos and all(r[schema.PIXEL_FEATURES].shape[1] == 0 for r in videos)
    rng = np.random.default_rng(0)
    channels, labels = next(iter(features.values())).shape[0], len(classes)
    head = PixelHead(
        rng.normal(size=(labels, channels)).astype(np.float32),
        rng.normal(size=labels).astype(np.float32),
        np.zeros(channels, np.float32),
        np.ones(channels, np.float32),
        np.ones(labels, bool),
    )
    mixed = CamStage(model_uri, cfg.cam, pixel_head=head.arrays(), head_share=1.0)(decoded)
    for plain, row in zip(sampled, iter_rows(mixed), strict=True):
        if row[schema.KIND] == schema.KIND_VIDEO:
            np.testing.assert_array_equal(row[schema.CAM], plain[schema.CAM])
            continue
        tags = loads(row[schema.TAG_IDS])
        maps = head_maps(head, features[row[schema.ID]], tags)
        want = mix_into_cams(plain[schema.CAM][0], maps, tags, head.seen, 1.0)
        np.testing.assert_allclose(row[schema.CAM][0], want, atol=1e-6)
        if tags:
            assert not np.allclose(row[schema.CAM][0], plain[schema.CAM][0])
