"""The fused CAM + refine actor (CPU clusters) gives what the two actor stages give one after the
other, row for row (no Ray: the adapters are plain callables)."""

import numpy as np
import pytest

from pipeline import schema
from pipeline.checkpoint import save_model
from pipeline.cluster.io_stages import decode_batch, item_row
from pipeline.cluster.stages import CamRefineStage, CamStage, RefineStage
from pipeline.collection import read_collection
from pipeline.label_config import PseudoLabelConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig
from pipeline.rows import iter_rows, to_batch
from pipeline.sample_data import generate


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    root = generate(str(tmp_path_factory.mktemp("coll")), images=3, videos=1)
    collection = read_collection(root)
    rows = [item_row(item) for item in collection.items]
    batch = to_batch(rows, ())
    cfg = PseudoLabelConfig()
    return decode_batch(batch, cfg.decode), collection.classes, cfg


@pytest.mark.parametrize("with_model", [True, False])
def test_fused_stage_matches_cam_then_refine(decoded, tmp_path, with_model):
    batch, classes, cfg = decoded
    model_uri = None
    if with_model:
        model_cfg = ModelConfig(backbone="resnet", width=8, num_classes=len(classes) - 1)
        torch_model = CamClassifier(model_cfg)
        model_uri = save_model(torch_model, model_cfg, str(tmp_path / "clf"), list(classes))
    apart = RefineStage(cfg)(CamStage(model_uri, cfg.cam)(batch))
    fused = CamRefineStage(model_uri, cfg)(batch)
    apart_rows, fused_rows = list(iter_rows(apart)), list(iter_rows(fused))
    assert len(fused_rows) == len(apart_rows) == 4  # 3 images, one window of the video
    for a, f in zip(apart_rows, fused_rows, strict=True):
        assert f[schema.GROUP] == a[schema.GROUP] and f[schema.STATUS] == a[schema.STATUS]
        assert f[schema.FRAME_STATUS] == a[schema.FRAME_STATUS]
        np.testing.assert_array_equal(f[schema.MASKS], a[schema.MASKS])
        assert schema.FRAMES not in f
    assert any((r[schema.MASKS] != 0).any() for r in fused_rows)  # something was labelled
