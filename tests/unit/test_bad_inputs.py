"""Collection- and decode-level outcome of every case of the bad-input corpus (badinputs.py)."""

import json
import os
import time
import tracemalloc

import pytest
from badinputs import build_corpus
from PIL import ImageFile

from pipeline import schema, storage
from pipeline.collection import CollectionConfig, ManifestError, read_collection
from pipeline.config import ConfigError, load_yaml
from pipeline.decode import DecodeConfig, DecodeError, read_image, read_video_frames

DECODE_REASONS = ("empty file", "cannot decode", "image too large", "cannot open video",
                  "no decodable frames", "file not found")  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    return root, build_corpus(root)


@pytest.fixture(scope="module")
def items(corpus):
    root, cases = corpus
    return read_collection(str(root)).items


def decode_outcome(item) -> tuple[str, str | None, tuple | None]:
    """(status, reason, (frames, H, W)) of one item, as the decode stage decides it."""
    try:
        if item.kind == schema.KIND_IMAGE:
            image = read_image(item.uri, DecodeConfig())
            return schema.LABELLED, None, (None, *image.shape[:2])
        frames = [frame for _, frame in read_video_frames(item.uri, DecodeConfig())]
        return schema.LABELLED, None, (len(frames), *frames[0].shape[:2])
    except FileNotFoundError:
        return schema.FAILED, "file not found", None
    except DecodeError as error:
        return schema.FAILED, str(error), None


def test_every_manifest_line_becomes_exactly_one_item(corpus, items):
    root, cases = corpus
    assert [it.source_index for it in items] == [c.index for c in cases]
    assert [it.id for it in items] == [c.item_id for c in cases]


def test_collection_level_cases_fail_with_their_reason(corpus, items):
    _, cases = corpus
    for case, item in zip(cases, items, strict=True):
        if case.reason and not any(r in case.reason for r in DECODE_REASONS):
            assert item.error and case.reason in item.error, case.name
        else:
            assert item.error is None, (case.name, item.error)


def test_decode_level_cases_give_their_status_reason_and_shape(corpus, items):
    _, cases = corpus
    for case, item in zip(cases, items, strict=True):
        if item.error:
            continue
        status, reason, shape = decode_outcome(item)
        assert status == case.status, (case.name, reason)
        if case.reason:
            assert case.reason in reason, (case.name, reason)
        else:
            assert shape == (case.frames, *case.shape), case.name


def test_bomb_is_refused_from_its_header_without_decoding(corpus, items, monkeypatch):
    bomb = next(it for it in items if it.id == "bomb")
    assert os.path.getsize(bomb.uri) < 200_000  # ~110 KB on disk, 900 M pixels when decoded

    def load(self):
        raise AssertionError("the bomb's pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=r"image too large: 30000x30000 = 900000000 pixels"):
        read_image(bomb.uri, DecodeConfig())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 1.0 and peak < 5_000_000


def test_size_limits_are_configurable(corpus, items):
    good = next(it for it in items if it.id == "good_png")
    with pytest.raises(DecodeError, match="file too large"):
        read_image(good.uri, DecodeConfig(max_image_bytes=100))
    video = next(it for it in items if it.id == "good_video")
    with pytest.raises(DecodeError, match="video frames too large"):
        list(read_video_frames(video.uri, DecodeConfig(max_pixels=100)))


def test_unknown_and_empty_tags_are_not_fatal(items):
    by_id = {it.id: it for it in items if it.error is None}
    assert by_id["unknown_tags"].tags == ("horse",) and by_id["unknown_tags"].tag_ids == (13,)
    assert by_id["unknown_tags"].unknown_tags == ("unicorn", "zebra")
    assert by_id["negative"].tags == () and by_id["negative"].tag_ids == ()


def test_unknown_tags_are_counted_for_the_run_summary(corpus):
    root, _ = corpus
    assert read_collection(str(root)).unknown_tags == {"unicorn": 1, "zebra": 1}


def test_duplicate_id_keeps_the_first_row(items):
    rows = [it for it in items if it.id == "good_rgb"]
    assert rows[0].error is None and "duplicate id: first used by row 0" in rows[1].error


def test_non_utf8_names_fail_clearly_and_stay_writable(corpus, items):
    root, _ = corpus
    assert os.path.exists(os.path.join(root, "media", os.fsdecode(b"caf\xe9.jpg")))
    escaped = next(it for it in items if it.id == "latin1")
    assert escaped.error == "uri is not valid UTF-8"
    assert escaped.source_uri == "media/caf\\udce9.jpg"  # backslash-escaped: parquet needs UTF-8
    raw = next(it for it in items if "0xe9" in (it.error or ""))
    assert raw.id.startswith("line-") and f"line {raw.source_index + 1}:" in raw.error
    for item in items:
        item.id.encode("utf-8"), item.source_uri.encode("utf-8")  # never raises


def test_csv_manifest_with_non_utf8_bytes_gives_rows_not_a_traceback(tmp_path):
    (tmp_path / "manifest.csv").write_bytes(b"id,uri,tags\nok,a.jpg,dog\nbad,caf\xe9.jpg,dog\n")
    first, second = read_collection(str(tmp_path)).items
    assert first.error is None and second.error == "uri is not valid UTF-8"


def test_malformed_lines_can_stop_the_job_with_the_line_number(corpus):
    root, cases = corpus
    first_bad = next(c for c in cases if c.reason == "malformed manifest row")
    with pytest.raises(
        ManifestError, match=rf"malformed manifest row: \S+ line {first_bad.index + 1}: "
    ):
        read_collection(str(root), CollectionConfig(malformed_rows="error"))


def test_escaping_and_absolute_uris_follow_the_config(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        '{"id": "up", "uri": "../../etc/passwd", "kind": "image"}\n'
        '{"id": "abs", "uri": "/etc/hostname.jpg"}\n{"id": "s3", "uri": "s3://bucket/k.jpg"}\n'
    )
    default = [it.error for it in read_collection(str(tmp_path)).items]
    assert "escapes the collection root" in default[0] and default[1:] == [None, None]
    allowed = read_collection(str(tmp_path), CollectionConfig(allow_outside_paths=True)).items
    assert allowed[0].error is None and allowed[0].uri.endswith("etc/passwd")
    strict = read_collection(str(tmp_path), CollectionConfig(allow_absolute_uris=False)).items
    assert all("absolute uri refused" in it.error for it in strict[1:])


@pytest.mark.parametrize("item_id", ["../x", "/abs", "a/../../b", "..\\..\\x", "a\x00b"])
def test_ids_that_could_write_outside_the_output_root_are_refused(tmp_path, item_id):
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"id": item_id, "uri": "a.jpg"}) + "\n")
    assert "unsafe id" in read_collection(str(tmp_path)).items[0].error


def test_accepted_ids_only_name_masks_inside_the_output_root(items, tmp_path):
    out = str(tmp_path / "labels")
    for item in items:
        if item.error is None:
            for mask in (schema.mask_path(item.id), schema.mask_path(item.id, 3)):
                assert storage.is_within(out, storage.join(out, mask)), item.id


def test_yaml_config_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'pseudo_label: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(str(config))
    assert not marker.exists()
