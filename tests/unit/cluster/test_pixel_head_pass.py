"""The pixel head's first pass: which images it samples, when it runs at all, and its actor as a
plain callable (no Ray runtime); the pass itself runs in tests/integration/test_pseudo_label.py."""

import numpy as np

from pipeline.checkpoint import save_model
from pipeline.cluster.io_stages import item_row
from pipeline.cluster.pixel_head_pass import (
    CELL_COLUMNS,
    PixelSampleStage,
    enough_images,
    head_sample,
)
from pipeline.collection import Item, read_collection
from pipeline.label_config import PseudoLabelConfig
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import ModelConfig
from pipeline.rows import to_batch
from pipeline.sample_data import generate


def _item(i: int, kind: str = "image", tags: tuple[int, ...] = (1,), error: str | None = None):
    return Item(f"i{i}", f"media/i{i}.jpg", kind, ("x",) * len(tags), tags, error=error)


def test_sample_takes_tagged_readable_images_evenly_spread():
    items = tuple(_item(i) for i in range(10)) + (
        _item(10, kind="video"),
        _item(11, tags=()),
        _item(12, error="file not found"),
    )
    assert [it.id for it in head_sample(items, 100)] == [f"i{i}" for i in range(10)]
    picked = [it.id for it in head_sample(items, 4)]
    assert picked == ["i0", "i3", "i6", "i9"]


def test_first_pass_runs_only_when_a_tag_is_on_enough_images():
    sample = [_item(i, tags=(1, 2) if i < 3 else (2,)) for i in range(5)]
    assert enough_images(sample, 5)  # tag 2 is on all five
    assert not enough_images(sample, 6)
    assert not enough_images([], 1)
    repeated = [_item(0, tags=(3, 3))]  # a tag listed twice counts once
    assert not enough_images(repeated, 2)


def test_sample_stage_gives_each_image_its_clean_cells_and_a_failed_one_none(tmp_path):
    root = generate(str(tmp_path / "coll"), images=3, videos=0)
    collection = read_collection(root)
    items = list(collection.items) + [_item(99, tags=(1,), error="file not found")]
    model_cfg = ModelConfig(backbone="resnet", width=8, num_classes=len(collection.classes) - 1)
    model_uri = save_model(
        CamClassifier(model_cfg), model_cfg, str(tmp_path / "c"), list(collection.classes)
    )
    cfg = PseudoLabelConfig()
    out = PixelSampleStage(model_uri, cfg)(to_batch([item_row(it) for it in items], ()))
    features, labels, allowed = (out[name] for name in CELL_COLUMNS)
    assert len(labels) == len(items)  # one row per image, so progress counts every image
    assert len(labels[-1]) == 0  # the failed image
    for item, f, y, a in zip(items[:-1], features[:-1], labels[:-1], allowed[:-1], strict=True):
        assert f.dtype == np.float16 and f.shape[0] == len(y) == len(a)
        assert 0 < len(y) <= cfg.pixel_head.cells_per_image
        permitted = {0, *item.tag_ids}
        assert set(np.unique(y).tolist()) <= permitted
        assert a.shape[1] == len(collection.classes)
        assert set(np.flatnonzero(a[0]).tolist()) == permitted
