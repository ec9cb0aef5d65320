"""predict: a whole collection -> label set that evaluate can read (no Ray)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

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
