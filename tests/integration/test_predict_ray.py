"""predict through a Ray actor pool writes the same label set as the driver path."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import checkpoint, schema
from pipeline.decode import DecodeConfig, read_image
from pipeline.label_config import StageResources
from pipeline.models.config import DeepLabConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.predict_run import run_predict
from pipeline.sample_data import generate
from pipeline.settings import PredictConfig

TINY = DeepLabConfig(backbone="resnet", width=8, aspp_channels=8, num_classes=3)


@pytest.fixture(scope="module")
def broken_collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("coll")
    generate(str(root), images=4, videos=1)
    (root / "media" / "img_002.jpg").write_bytes(b"not a jpeg")
    return root


def _manifest(out) -> list[dict]:
    return pq.read_table(out / schema.MANIFEST_NAME).to_pylist()


def test_actor_pool_matches_the_driver_and_keeps_failed_items(
    ray_session, broken_collection, tmp_path
):
    import torch

    torch.manual_seed(0)
    model_file = checkpoint.save_model(
        DeepLabV3(TINY), TINY, str(tmp_path / "m.pt"), ["background", "ball", "box"]
    )
    base = dict(long_side=48, decode=DecodeConfig(max_frames_per_video=3))
    driver, pool = tmp_path / "driver", tmp_path / "pool"
    run_predict(
        model_file,
        str(broken_collection),
        str(driver),
        PredictConfig(**base, resources=StageResources(actors=0)),
    )
    run = run_predict(
        model_file,
        str(broken_collection),
        str(pool),
        PredictConfig(**base, resources=StageResources(actors=2, num_cpus=1.0, batch_size=1)),
    )
    rows = _manifest(pool)
    assert rows == _manifest(driver)
    assert run["counts"]["status"] == {schema.LABELLED: 6, schema.FAILED: 1}
    failed = [r for r in rows if r[schema.STATUS] == schema.FAILED]
    assert [r[schema.ID] for r in failed] == ["img_002"] and failed[0][schema.REASON]
    for row in rows:
        if row[schema.MASK_URI]:
            a = read_image(str(pool / row[schema.MASK_URI]), DecodeConfig())
            b = read_image(str(driver / row[schema.MASK_URI]), DecodeConfig())
            assert np.array_equal(a, b)
    shutil.rmtree(driver)
