"""`webseg manifest DIR`: a folder per search keyword becomes a manifest the collection reader
accepts; folders that name no class are left out and reported."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pipeline.collection import read_collection
from pipeline.manifest_builder import ROOT_FOLDER, build_manifest, match_class, write_manifest
from pipeline.schema import VOC_CLASSES


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _video(path, frames=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 24))
    for index in range(frames):
        writer.write(np.full((24, 32, 3), 40 * index, np.uint8))
    writer.release()
    assert path.stat().st_size > 0


@pytest.fixture
def crawl(tmp_path):
    root = tmp_path / "crawl"
    _image(root / "Horses" / "0001.jpg")
    _image(root / "Horses" / "page2" / "0002.png", 1)
    _image(root / "potted plant" / "a.jpg", 2)
    _image(root / "tv_monitor" / "a.jpg", 3)
    _video(root / "people" / "walk.mp4")
    _image(root / "kittens" / "k.jpg", 4)
    _image(root / "kittens" / "k2.jpg", 5)
    (root / "horses-notes").mkdir()
    (root / "Horses" / "readme.txt").write_text("not media")
    _image(root / "loose.jpg", 6)
    return root


@pytest.mark.parametrize(
    "folder, expected",
    [
        ("horses", "horse"),
        ("HORSE", "horse"),
        ("potted plant", "pottedplant"),
        ("Potted_Plants", "pottedplant"),
        ("tv monitor", "tvmonitor"),
        ("buses", "bus"),
        ("people", "person"),
        ("airplane", "aeroplane"),
        ("sheep", "sheep"),
        ("background", None),
        ("kitten", None),
    ],
)
def test_folder_names_map_to_voc_classes(folder, expected):
    assert match_class(folder, VOC_CLASSES) == expected


def test_synonyms_apply_only_to_classes_in_the_label_space():
    assert match_class("people", ("background", "ball", "box")) is None
    assert match_class("Balls", ("background", "ball", "box")) == "ball"


def test_build_maps_folders_and_reports_the_rest(crawl):
    build = build_manifest(str(crawl), str(crawl))
    assert build.mapped == {
        "Horses": "horse",
        "people": "person",
        "potted plant": "pottedplant",
        "tv_monitor": "tvmonitor",
    }
    assert build.unmapped == {ROOT_FOLDER: 1, "horses-notes": 0, "kittens": 2}
    by_id = {row["id"]: row for row in build.rows}
    assert by_id["Horses/page2/0002"] == {
        "id": "Horses/page2/0002",
        "uri": "Horses/page2/0002.png",
        "kind": "image",
        "tags": ["horse"],
    }
    assert by_id["people/walk"]["kind"] == "video"
    assert len(build.rows) == 5


@pytest.mark.parametrize("name", ["manifest.jsonl", "manifest.csv", "manifest.parquet"])
def test_written_manifest_reads_back_as_a_collection(crawl, name):
    build = build_manifest(str(crawl), str(crawl))
    write_manifest(build.rows, str(crawl / name))
    collection = read_collection(str(crawl / name))
    assert [item.error for item in collection.items] == [None] * 5
    tags = {item.id: item.tags for item in collection.items}
    assert tags["potted plant/a"] == ("pottedplant",)
    assert all((crawl / item.source_uri).exists() for item in collection.items)


def test_a_manifest_outside_the_tree_names_files_by_absolute_path(crawl, tmp_path):
    build = build_manifest(str(crawl), str(tmp_path / "elsewhere"))
    assert all(row["uri"].startswith(str(crawl)) for row in build.rows)


def test_cli_writes_manifest_and_classes_and_prints_the_report(crawl, tmp_path):
    classes = tmp_path / "my-classes.json"
    classes.write_text(json.dumps(["background", "horse", "kitten"]))
    out = crawl / "manifest.jsonl"
    result = _webseg("manifest", str(crawl), "--out", str(out), "--classes", str(classes))
    assert result.returncode == 0, result.stderr
    assert "mapped folders:" in result.stdout and "Horses" in result.stdout
    assert "not mapped to the label space (left out):" in result.stdout
    assert "people" in result.stdout.split("left out")[1]
    assert json.loads((crawl / "classes.json").read_text()) == ["background", "horse", "kitten"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["tags"][0] for r in rows) == ["horse", "horse", "kitten", "kitten"]
    again = _webseg("manifest", str(crawl), "--out", str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_cli_fails_when_no_folder_maps(tmp_path):
    _image(tmp_path / "crawl" / "kittens" / "a.jpg")
    result = _webseg("manifest", str(tmp_path / "crawl"))
    assert result.returncode == 1
    assert "no sub-folder" in result.stderr and "kittens" in result.stderr
    assert not (tmp_path / "crawl" / "manifest.jsonl").exists()


def _webseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=120
    )
