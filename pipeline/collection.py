"""Read a web collection's manifest (jsonl, parquet or csv) into typed items (data contract)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("manifest.jsonl", "manifest.parquet", "manifest.csv")
COLUMNS = ("id", "uri", "kind", "tags")  # the data contract's manifest columns
REQUIRED_COLUMNS = ("uri",)
MALFORMED_ROWS = ("fail", "error")
EXTRA_COLUMNS = ("error", "ignore")


class ManifestError(ValueError):
    """The manifest cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class CollectionConfig:
    allow_outside_paths: bool = False  # relative uris that climb out of the collection root ('..')
    allow_absolute_uris: bool = True  # absolute paths and s3:// uris named by the manifest
    malformed_rows: str = (
        "fail"  # "fail": a failed row per malformed line; "error": stop with the line number
    )
    extra_columns: str = "error"  # columns beyond id/uri/kind/tags: "error" stops, "ignore" drops

    def __post_init__(self) -> None:
        for name, allowed in (("malformed_rows", MALFORMED_ROWS), ("extra_columns", EXTRA_COLUMNS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"collection.{name} must be {' or '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class Item:
    """One manifest row. `error` is set when the row cannot be processed (it becomes a failed row)."""

    id: str
    uri: str  # resolved: a full local path or URI
    kind: str
    tags: tuple[str, ...]  # known tags only
    tag_ids: tuple[int, ...]
    source_uri: str = ""  # as written in the manifest
    unknown_tags: tuple[str, ...] = ()
    source_index: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Collection:
    root: str
    classes: tuple[str, ...]
    items: tuple[Item, ...]
    unknown_tags: dict[str, int] = field(default_factory=dict)


def load_label_space(root: str) -> tuple[str, ...]:
    """classes.json of the collection, or the VOC-21 default."""
    path = storage.join(root, "classes.json")
    return read_classes(path) if storage.exists(path) else schema.VOC_CLASSES


def read_classes(uri: str) -> tuple[str, ...]:
    """A classes.json file (a non-empty JSON list of class names, background first); ManifestError
    when it is anything else."""
    classes = json.loads(storage.read_text(uri))
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise ManifestError(f"{uri}: expected a non-empty JSON list of class names")
    return tuple(classes)


def find_manifest(collection_uri: str) -> tuple[str, str]:
    """(root folder, manifest uri) for a collection folder or a manifest file uri."""
    if collection_uri.rstrip("/").endswith((".jsonl", ".parquet", ".csv")):
        return storage.dirname(collection_uri), collection_uri
    for name in MANIFEST_NAMES:
        candidate = storage.join(collection_uri, name)
        if storage.exists(candidate):
            return collection_uri, candidate
    raise ManifestError(f"no manifest ({', '.join(MANIFEST_NAMES)}) in {collection_uri}")


def require_manifest(collection_uri: str) -> str:
    """The collection's manifest URI, or ManifestError when there is none: a cheap check that
    commands run before they start Ray, so a mistyped path fails at once."""
    _, manifest_uri = find_manifest(collection_uri)
    if not storage.exists(manifest_uri):
        raise ManifestError(f"manifest {manifest_uri} does not exist")
    return manifest_uri


def read_collection(collection_uri: str, cfg: CollectionConfig | None = None) -> Collection:
    """Parse the manifest into items; bad rows become items with `error` set, never exceptions
    (unless cfg.malformed_rows == "error")."""
    cfg = cfg or CollectionConfig()
    root, manifest_uri = find_manifest(collection_uri)
    classes = load_label_space(root)
    class_index = {name: i for i, name in enumerate(classes)}
    items, seen, unknown = [], {}, Counter()
    for index, row in enumerate(_checked_rows(_rows(manifest_uri, cfg), manifest_uri, cfg)):
        item = _to_item(row, index, root, class_index, cfg)
        if item.error is None and item.id in seen:
            item = _with_error(item, f"duplicate id: first used by row {seen[item.id]}")
        seen.setdefault(item.id, index)
        unknown.update(item.unknown_tags)
        items.append(item)
    if not items:
        raise ManifestError(f"{manifest_uri} lists no items")
    if unknown:
        log.warning("unknown tags dropped: %s", dict(unknown.most_common(20)))
    return Collection(root=root, classes=classes, items=tuple(items), unknown_tags=dict(unknown))


def _with_error(item: Item, error: str) -> Item:
    return Item(**{**item.__dict__, "error": error})


def column_problem(columns: set, where: str, cfg: CollectionConfig) -> str | None:
    """Why a row's (or a header's) column names break the contract, or None."""
    extra = sorted(str(c) for c in columns - set(COLUMNS) - {"_error"})  # csv: None = extra cells
    if extra and cfg.extra_columns == "error":
        return (
            f"{where}: unknown column {', '.join(map(repr, extra))}; allowed: {', '.join(COLUMNS)} "
            "(collection.extra_columns: ignore drops extra columns)"
        )
    return None


def _checked_rows(rows: Iterator[dict], manifest_uri: str, cfg: CollectionConfig) -> Iterator[dict]:
    """Rows with only the contract's columns; ManifestError on unknown columns (unless ignored)
    and when no row has the required `uri` column (a misspelt header fails every row)."""
    required_seen, count = set(), 0
    for number, row in enumerate(rows, start=1):
        count += 1
        problem = column_problem(set(row), f"{manifest_uri} row {number}", cfg)
        if problem:
            raise ManifestError(problem)
        required_seen.update(c for c in REQUIRED_COLUMNS if c in row)
        yield {k: v for k, v in row.items() if k in COLUMNS or k == "_error"}
    missing = [c for c in REQUIRED_COLUMNS if c not in required_seen]
    if count and missing:
        raise ManifestError(
            f"{manifest_uri}: required column {', '.join(map(repr, missing))} missing "
            f"(columns: {', '.join(COLUMNS)})"
        )


def _rows(manifest_uri: str, cfg: CollectionConfig) -> Iterator[dict]:
    data = storage.read_bytes(manifest_uri)
    if manifest_uri.endswith(".parquet"):
        yield from pq.read_table(pa.BufferReader(data)).to_pylist()
    elif manifest_uri.endswith(".csv"):
        yield from csv.DictReader(io.StringIO(data.decode("utf-8-sig", "surrogateescape")))
    else:
        yield from _jsonl_rows(data, manifest_uri, cfg)


def _jsonl_rows(data: bytes, manifest_uri: str, cfg: CollectionConfig) -> Iterator[dict]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError("a line must hold a JSON object")
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            message = f"malformed manifest row: {manifest_uri} line {number}: {error}"
            if cfg.malformed_rows == "error":
                raise ManifestError(message) from None
            yield {"id": f"line-{number}", "uri": "", "tags": [], "_error": message}
            continue
        yield row


def parse_tags(value: object) -> list[str]:
    """Tags as a list of strings from a list, a JSON list string, or a '|'/';'/',' separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            for separator in ("|", ";", ","):
                if separator in text:
                    return [t.strip() for t in text.split(separator) if t.strip()]
            return [text] if text else []
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"tags must be a list of strings, got {value!r}")
    return [t.strip() for t in value if t.strip()]


def infer_kind(uri: str) -> str | None:
    extension = os.path.splitext(uri.lower())[1]
    if extension in schema.IMAGE_EXTENSIONS:
        return schema.KIND_IMAGE
    if extension in schema.VIDEO_EXTENSIONS:
        return schema.KIND_VIDEO
    return None


def _to_item(row: dict, index: int, root: str, class_index: dict, cfg: CollectionConfig) -> Item:
    source_uri, uri_ok = _printable(str(row.get("uri") or ""))
    stem = posixpath.splitext(posixpath.basename(source_uri))[0]
    item_id, id_ok = _printable(str(row.get("id") or stem))
    if not (uri_ok and id_ok):  # the output manifest (parquet) holds UTF-8 only
        bad = "uri" if not uri_ok else "id"
        row = {**row, "_error": row.get("_error") or f"{bad} is not valid UTF-8"}
    base = Item(item_id, source_uri, str(row.get("kind") or ""), (), (), source_uri, (), index)
    try:
        tags = parse_tags(row.get("tags"))
    except ValueError as error:
        return _with_error(base, f"bad tags: {error}")
    known = tuple(dict.fromkeys(t for t in tags if t in class_index and class_index[t] != 0))
    unknown = tuple(t for t in tags if t not in class_index)
    base = Item(
        item_id,
        source_uri,
        base.kind,
        known,
        tuple(class_index[t] for t in known),
        source_uri,
        unknown,
        index,
    )
    error = row.get("_error") or _row_problem(base, root, cfg)
    if error:
        return _with_error(base, error)
    kind = base.kind or infer_kind(source_uri)
    return Item(**{**base.__dict__, "uri": storage.resolve(root, source_uri), "kind": kind})


def _row_problem(item: Item, root: str, cfg: CollectionConfig) -> str | None:
    """Why a row cannot be processed, or None."""
    if not item.source_uri:
        return "missing uri"
    id_problem = unsafe_id_reason(item.id)
    if id_problem:
        return id_problem
    explicit = storage.is_remote(item.source_uri) or os.path.isabs(item.source_uri)
    if explicit and not cfg.allow_absolute_uris:
        return "absolute uri refused (collection.allow_absolute_uris is false)"
    resolved = storage.resolve(root, item.source_uri)
    if not explicit and not cfg.allow_outside_paths and not storage.is_within(root, resolved):
        return "uri escapes the collection root (collection.allow_outside_paths is false)"
    kind = item.kind or infer_kind(item.source_uri)
    if kind not in (schema.KIND_IMAGE, schema.KIND_VIDEO):
        return (
            f"unknown kind: {item.kind!r}" if item.kind else "cannot infer kind from the extension"
        )
    return None


def _printable(text: str) -> tuple[str, bool]:
    """(text with undecodable characters backslash-escaped, whether it was valid UTF-8)."""
    try:
        text.encode("utf-8")
        return text, True
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8"), False


def unsafe_id_reason(item_id: str) -> str | None:
    """Ids name output files: refuse those that could write outside the output root."""
    try:
        item_id.encode("utf-8")
    except UnicodeEncodeError:
        return "id is not valid UTF-8"
    parts = item_id.replace("\\", "/").split("/")
    if not item_id or item_id.startswith(("/", "\\")) or ".." in parts or "\x00" in item_id:
        return f"unsafe id (empty, absolute or containing '..'): {item_id!r}"
    return None
