"""A collection manifest from a crawl stored as one folder per search keyword (`webseg manifest`).

    DIR/horses/0001.jpg, DIR/potted plant/a.png, DIR/person/clip.mp4, DIR/kitten/x.jpg
    build_manifest("DIR", "DIR")  -> rows {"id": "horses/0001", "uri": "horses/0001.jpg",
                                          "kind": "image", "tags": ["horse"]}, ...
                                     unmapped {"kitten": 1}  (left out of the manifest)

Folder names map to the label space case-insensitively, ignoring spaces, '_' and '-', after simple
English plurals ("horses" -> horse, "buses" -> bus) and a few common crawl synonyms ("people" ->
person, "airplane" -> aeroplane), a synonym only when its target is in the label space.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.collection import infer_kind

ROOT_FOLDER = "(files directly in DIR)"
SYNONYMS = {  # normalised folder name -> class name (used only when that class is in the labels)
    "people": "person",
    "persons": "person",
    "airplane": "aeroplane",
    "plane": "aeroplane",
    "motorcycle": "motorbike",
    "bike": "bicycle",
    "tv": "tvmonitor",
    "television": "tvmonitor",
    "monitor": "tvmonitor",
    "couch": "sofa",
    "table": "diningtable",
    "plant": "pottedplant",
}


@dataclass(frozen=True)
class ManifestBuild:
    rows: tuple[dict, ...]  # manifest rows: id, uri, kind, tags
    mapped: dict[str, str] = field(default_factory=dict)  # folder -> class name
    counts: dict[str, int] = field(default_factory=dict)  # folder -> media files found
    unmapped: dict[str, int] = field(default_factory=dict)  # folder -> media files left out


def normalise(name: str) -> str:
    """'Potted_Plant' -> 'pottedplant': lower case without spaces, '_' or '-'."""
    return "".join(c for c in name.lower() if c not in " _-.")


def _singulars(word: str) -> list[str]:
    """word itself, then its simple English singular forms."""
    forms = [word]
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    return forms


def match_class(folder: str, classes: tuple[str, ...]) -> str | None:
    """The class a keyword folder names, or None (background is never a keyword)."""
    index = {normalise(c): c for c in classes[1:]}  # index 0 is background in every label space
    for form in _singulars(normalise(folder)):
        if form in index:
            return index[form]
        synonym = SYNONYMS.get(form)
        if synonym and synonym in index.values():
            return synonym
    return None


def _media_files(folder: str) -> list[str]:
    """Image and video files under folder (recursive, hidden entries skipped), sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(parent, f) for f in files if not f.startswith(".") and infer_kind(f)]
    return sorted(found)


def _uri(path: str, manifest_dir: str) -> str:
    """Relative to the manifest's folder where the file lies under it, else absolute."""
    path, base = os.path.abspath(path), os.path.abspath(manifest_dir)
    if os.path.commonpath([path, base]) == base:
        return os.path.relpath(path, base).replace(os.sep, "/")
    return path


def _row(path: str, root: str, manifest_dir: str, tag: str, used_ids: set[str]) -> dict:
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    item_id = os.path.splitext(relative)[0]
    if item_id in used_ids:  # a.jpg beside a.png
        item_id = relative.replace(".", "_")
    used_ids.add(item_id)
    return {"id": item_id, "uri": _uri(path, manifest_dir), "kind": infer_kind(path), "tags": [tag]}


def _keyword_folders(root: str) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def build_manifest(
    root: str, manifest_dir: str, classes: tuple[str, ...] = schema.VOC_CLASSES
) -> ManifestBuild:
    """Rows for every image/video under a sub-folder of root whose name maps to a class; the
    other folders (and files directly in root) are counted in `unmapped` and left out."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"not a folder: {root}")
    rows, mapped, counts, unmapped, used_ids = [], {}, {}, {}, set()
    loose = [e.name for e in os.scandir(root) if e.is_file() and infer_kind(e.name)]
    if loose:
        unmapped[ROOT_FOLDER] = len(loose)
    for folder in _keyword_folders(root):
        files = _media_files(os.path.join(root, folder))
        tag = match_class(folder, classes)
        counts[folder] = len(files)
        if tag is None:
            unmapped[folder] = len(files)
            continue
        mapped[folder] = tag
        rows += [_row(p, root, manifest_dir, tag, used_ids) for p in files]
    return ManifestBuild(tuple(rows), mapped, counts, unmapped)


def write_manifest(rows: tuple[dict, ...], out: str) -> None:
    """rows as manifest.jsonl, .csv (tags '|'-separated) or .parquet, by out's extension."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".parquet"):

        pq.write_table(pa.Table.from_pylist(list(rows)), out)
    elif out.endswith(".csv"):
        with open(out, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=["id", "uri", "kind", "tags"])
            writer.writeheader()
            writer.writerows({**r, "tags": "|".join(r["tags"])} for r in rows)
    else:
        with open(out, "w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def format_report(build: ManifestBuild, out: str) -> str:
    """What went into the manifest and which folders were left out, for the terminal."""
    kinds = [r["kind"] for r in build.rows]
    images, videos = kinds.count(schema.KIND_IMAGE), kinds.count(schema.KIND_VIDEO)
    lines = [
        f"manifest: {out} ({_count(len(kinds), 'item')}: "
        f"{_count(images, 'image')}, {_count(videos, 'video')})"
    ]
    width = max((len(f) for f in [*build.mapped, *build.unmapped]), default=0)
    tag_width = max((len(t) for t in build.mapped.values()), default=0)
    lines += ["mapped folders:"] + [
        f"  {f:<{width}} -> {t:<{tag_width}}  {_count(build.counts[f], 'file')}"
        for f, t in build.mapped.items()
    ]
    if build.unmapped:
        lines += ["not mapped to the label space (left out):"] + [
            f"  {f:<{width}}    {_count(n, 'file')}" for f, n in build.unmapped.items()
        ]
    return "\n".join(lines)
