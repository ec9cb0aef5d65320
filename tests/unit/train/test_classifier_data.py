"""The classifier's streamed training data: item rows, the Ray Data decode step, marker rows of
items that cannot be decoded, the census summed from them, and the head fit's one pass (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.collection import read_collection
from pipeline.models.config import ModelConfig
from pipeline.sample_data import generate
from pipeline.train.classifier_data import (
    _summary,
    add_up,
    decode_rows,
    item_rows,
    load_training_set,
    multi_hot,
    usable,
)
from pipeline.train.config import ClassifierTrainConfig
from pipeline.train.finetune import balanced_weights, positive_weights


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return read_collection(generate(str(tmp_path_factory.mktemp("c")), images=6, videos=1))


def test_multi_hot_marks_foreground_tags_one_based():
    assert multi_hot([1, 3], 4).tolist() == [1, 0, 1, 0]
    assert multi_hot([], 2).tolist() == [0, 0]


def test_item_rows_are_small_seeded_and_leave_videos_out_unless_asked(collection):
    rows = item_rows(collection, ClassifierTrainConfig())
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"image"}
    assert set(rows[0]) == {"item", "uri", "kind", "error", "tag_ids", "num_classes"}
    assert [r["item"] for r in rows] == [
        r["item"] for r in item_rows(collection, ClassifierTrainConfig())
    ]
    assert [r["item"] for r in rows] != [
        r["item"] for r in item_rows(collection, ClassifierTrainConfig(seed=1))
    ]
    assert len(item_rows(collection, ClassifierTrainConfig(video_frames=True))) == 7


def test_decode_rows_gives_one_square_per_image_and_per_sampled_frame(collection):
    rows = item_rows(collection, ClassifierTrainConfig(video_frames=True))
    image = next(r for r in rows if r["kind"] == "image")
    (out,) = decode_rows(image, 32, 1, 4)
    assert out["image"].shape == (32, 32, 3) and out["image"].dtype == np.uint8
    assert out["skip"] == "" and out["item"] == image["item"]
    assert out["target"].tolist() == multi_hot(image["tag_ids"], image["num_classes"]).tolist()
    video = next(r for r in rows if r["kind"] == "video")
    frames = decode_rows(video, 32, 2, 3)
    assert 1 < len(frames) <= 3 and all(f["skip"] == "" for f in frames)


def test_an_item_that_cannot_be_decoded_becomes_one_marker_row(collection):
    row = item_rows(collection, ClassifierTrainConfig())[0]
    (missing,) = decode_rows({**row, "uri": "/nonexistent/x.jpg"}, 16, 1, 4)
    assert missing["skip"] and missing["image"].shape == (16, 16, 3)
    (failed,) = decode_rows({**row, "error": "bad row"}, 16, 1, 4)
    assert failed["skip"] == "bad row"


def test_usable_drops_marker_rows_and_names_them():
    batch = {
        "image": np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3),
        "target": np.eye(3, dtype=np.float32),
        "item": np.array(["a", "b", "c"], dtype=object),
        "skip": np.array(["", "gone", ""], dtype=object),
    }
    images, targets, skipped = usable(batch)
    assert images.shape == (2, 2, 2, 3) and targets.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert skipped == {"b": "gone"} and images.flags.writeable


def test_balanced_weights_from_counts_equal_positive_weights_of_the_targets():
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    expected = positive_weights(targets, 30.0)
    assert torch.equal(balanced_weights(targets.sum(dim=0), 4, 30.0), expected)
    assert expected.tolist() == [1.0, 3.0, 4.0]  # no positive: all rows count


def test_load_training_set_decodes_locally(collection):
    data = load_training_set(collection, ClassifierTrainConfig(head_sizes=(24,)))
    assert data.images.shape == (6, 24, 24, 3) and data.targets.shape == (6, 2)
    assert not data.skipped


class _Shard:
    """Ray Data batches over in-memory decode_rows rows: iter_batches (numpy, all columns) and a
    worker's iter_torch_batches of the decoded ones (what training_dataset leaves)."""

    def __init__(self, rows):
        self.rows = rows

    def iter_batches(self, batch_size, batch_format):
        assert batch_format == "numpy"
        for start in range(0, len(self.rows), batch_size):
            part = self.rows[start : start + batch_size]
            yield {k: np.stack([r[k] for r in part]) for k in part[0]}

    def iter_torch_batches(self, batch_size, dtypes, device, local_shuffle_buffer_size, drop_last):
        decoded = _Shard([r for r in self.rows if not r["skip"]])
        for batch in decoded.iter_batches(batch_size, "numpy"):
            yield {k: torch.from_numpy(batch[k]).to(dtypes[k]) for k in ("image", "target")}


def _shard(collection, size, broken: int = 1):
    rows = item_rows(collection, ClassifierTrainConfig())
    rows[:broken] = [{**r, "error": "unreadable"} for r in rows[:broken]]
    return _Shard([d for r in rows for d in decode_rows(r, size, 1, 4)]), rows


def test_census_counts_decoded_rows_positives_and_skipped_items(collection):
    shard, rows = _shard(collection, 16)
    census = add_up(map(_summary, shard.iter_batches(4, "numpy")), 2)
    decoded = np.stack([multi_hot(r["tag_ids"], 2) for r in rows[1:]])
    assert census.rows == 5 and census.skipped == {rows[0]["item"]: "unreadable"}
    assert census.positives.tolist() == decoded.sum(axis=0).tolist()
    broken, _ = _shard(collection, 16, broken=6)
    assert add_up(map(_summary, broken.iter_batches(4, "numpy")), 2).rows == 0


def test_head_scores_from_pooled_features_equal_the_model_on_the_images(collection):
    """finetune=head computes the final mAP from features pooled in its one pass over the data."""
    from pipeline.models.classifier import CamClassifier
    from pipeline.train.augment import eval_batch
    from pipeline.train.classifier_loop import _fit_head

    model_cfg = ModelConfig(backbone="resnet", depth=18, width=16, num_classes=2)
    cfg = ClassifierTrainConfig(model=model_cfg, pretrained="x.pth", head_sizes=(48,),
                                image_size=32, head_steps=20, batch_size=4)  # fmt: skip
    torch.manual_seed(0)
    model = CamClassifier(model_cfg)
    shard, _ = _shard(collection, 48)
    timings, (scores, targets) = _fit_head(model, shard, cfg, "cpu", torch.ones(2))
    assert len(scores) == len(targets) == 5 and timings["feature_rows"] == 10
    images = torch.from_numpy(np.stack([r["image"] for r in shard.rows if not r["skip"]]))
    with torch.inference_mode():
        direct = torch.sigmoid(model.eval()(eval_batch(images, 32, model.input_stats)))
    np.testing.assert_allclose(scores, direct.numpy(), atol=1e-5)
