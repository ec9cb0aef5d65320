"""Strict manifests: the required `uri` column, unknown columns and enum config values fail at load
with a message naming the allowed values; an empty manifest is an error, not an empty label set."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.collection import CollectionConfig, ManifestError, read_collection
from pipeline.config import ConfigError, from_dict
from pipeline.label_config import PseudoLabelConfig


def _jsonl(root, rows):
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(root)


def test_misspelt_tags_column_is_an_error_naming_the_allowed_columns(tmp_path):
    root = _jsonl(tmp_path, [{"uri": "a.jpg", "tag": ["cat"]}])
    with pytest.raises(ManifestError, match=r"unknown column 'tag'; allowed: id, uri, kind, tags"):
        read_collection(root)


def test_extra_columns_can_be_ignored(tmp_path):
    root = _jsonl(tmp_path, [{"uri": "a.jpg", "tags": ["cat"], "crawl_query": "cat photo"}])
    items = read_collection(root, CollectionConfig(extra_columns="ignore")).items
    assert items[0].tags == ("cat",) and items[0].error is None


def test_misspelt_uri_column_in_every_row_is_an_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("id,url,tags\na,a.jpg,cat\nb,b.jpg,dog\n")
    with pytest.raises(ManifestError, match="unknown column 'url'"):
        read_collection(str(tmp_path))
    with pytest.raises(ManifestError, match="required column 'uri' missing"):
        read_collection(str(tmp_path), CollectionConfig(extra_columns="ignore"))


def test_one_row_without_uri_is_a_failed_row_not_a_manifest_error(tmp_path):
    root = _jsonl(tmp_path, [{"uri": "a.jpg"}, {"id": "b", "tags": ["dog"]}])
    assert [it.error for it in read_collection(root).items] == [None, "missing uri"]


def test_parquet_header_is_checked(tmp_path):
    table = pa.table({"uri": ["a.jpg"], "tags": [["cat"]], "label": ["x"]})
    pq.write_table(table, tmp_path / "manifest.parquet")
    with pytest.raises(ManifestError, match="unknown column 'label'"):
        read_collection(str(tmp_path))


def test_an_empty_manifest_is_an_error(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="lists no items"):
        read_collection(str(tmp_path))


@pytest.mark.parametrize("key, value", [("malformed_rows", "bogus"), ("extra_columns", "warn")])
def test_enum_config_values_are_validated_at_load(key, value):
    with pytest.raises(ConfigError, match=rf"collection.{key} must be .* not '{value}'"):
        from_dict(PseudoLabelConfig, {"collection": {key: value}})
    assert from_dict(PseudoLabelConfig, {"collection": {key: "error"}}).collection
