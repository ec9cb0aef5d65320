import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.collection import CollectionConfig, ManifestError, parse_tags, read_collection


def write_jsonl(root, rows, classes=None):
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if classes:
        (root / "classes.json").write_text(json.dumps(classes))


def test_jsonl_rows_become_items_with_resolved_uris(tmp_path):
    write_jsonl(
        tmp_path,
        [
            {"uri": "media/a.jpg", "tags": ["dog", "zebra"]},
            {"id": "v", "uri": "media/v.mp4", "tags": []},
        ],
    )
    collection = read_collection(str(tmp_path))
    first, second = collection.items
    assert first.id == "a" and first.kind == "image" and first.tags == ("dog",)
    assert first.tag_ids == (12,) and first.unknown_tags == ("zebra",)
    assert first.uri == str(tmp_path / "media" / "a.jpg") and first.error is None
    assert second.kind == "video" and second.tags == ()
    assert collection.unknown_tags == {"zebra": 1}


def test_parquet_and_csv_manifests(tmp_path):
    pq.write_table(pa.table({"uri": ["x.png"], "tags": [["cat"]]}), tmp_path / "manifest.parquet")
    assert read_collection(str(tmp_path)).items[0].tags == ("cat",)
    other = tmp_path / "csv"
    other.mkdir()
    (other / "manifest.csv").write_text('id,uri,tags\nq,q.jpg,"cat|dog"\n')
    assert read_collection(str(other)).items[0].tags == ("cat", "dog")


def test_custom_label_space(tmp_path):
    write_jsonl(tmp_path, [{"uri": "a.jpg", "tags": ["ball"]}], ["background", "ball"])
    collection = read_collection(str(tmp_path))
    assert collection.classes == ("background", "ball") and collection.items[0].tag_ids == (1,)


def test_bad_rows_get_reasons_not_exceptions(tmp_path):
    write_jsonl(
        tmp_path,
        [
            {"uri": "a.jpg", "tags": []},
            {"uri": "a.jpg", "tags": []},
            {"uri": "../../etc/passwd.jpg", "tags": []},
            {"uri": "doc.txt", "tags": []},
            {"id": "../up", "uri": "b.jpg"},
            {"uri": ""},
        ],
    )
    errors = [item.error for item in read_collection(str(tmp_path)).items]
    assert errors[0] is None
    assert "duplicate id" in errors[1]
    assert "escapes the collection root" in errors[2]
    assert "cannot infer kind" in errors[3]
    assert "unsafe id" in errors[4]
    assert errors[5] == "missing uri"


def test_outside_paths_allowed_by_config(tmp_path):
    write_jsonl(tmp_path, [{"uri": "../x.jpg", "tags": []}])
    item = read_collection(str(tmp_path), CollectionConfig(allow_outside_paths=True)).items[0]
    assert item.error is None


def test_malformed_line_fails_row_or_raises_with_line_number(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"uri": "a.jpg"}\n{not json\n')
    items = read_collection(str(tmp_path)).items
    assert items[1].id == "line-2" and "line 2" in items[1].error
    with pytest.raises(ManifestError, match="line 2"):
        read_collection(str(tmp_path), CollectionConfig(malformed_rows="error"))


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_collection(str(tmp_path))


def test_parse_tags_forms():
    assert parse_tags('["a", "b"]') == ["a", "b"]
    assert parse_tags("a; b") == ["a", "b"]
    assert parse_tags(None) == [] and parse_tags("") == []
    with pytest.raises(ValueError):
        parse_tags(5)


def test_require_manifest_names_the_missing_manifest(tmp_path):
    from pipeline.collection import require_manifest

    write_jsonl(tmp_path, [{"uri": "media/a.jpg", "tags": []}])
    assert require_manifest(str(tmp_path)) == str(tmp_path / "manifest.jsonl")
    with pytest.raises(ManifestError, match="no manifest"):
        require_manifest(str(tmp_path / "elsewhere"))
    with pytest.raises(ManifestError, match="does not exist"):
        require_manifest(str(tmp_path / "other.parquet"))


def test_cli_fails_on_a_missing_collection_before_starting_ray(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pipeline.cli", "pseudo-label", "--collection", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--model", "none", "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "no manifest" in done.stderr
    assert "Ray" not in done.stderr and not (tmp_path / "out").exists()
