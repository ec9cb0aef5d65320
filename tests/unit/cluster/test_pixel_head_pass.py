"""The pixel head's first pass: which images it samples and when it runs at all (no Ray runtime);
the pass itself runs in tests/integration/test_pseudo_label.py."""

from pipeline.cluster.pixel_head_pass import enough_images, head_sample
from pipeline.collection import Item


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
