"""`webseg manifest` and `webseg config`: preparing a run (argument definitions and handlers)."""

from __future__ import annotations

import argparse
import json
import os

import yaml

from pipeline.collection import ManifestError, load_label_space, read_classes
from pipeline.manifest_builder import build_manifest, format_report, write_manifest
from pipeline.schema import KIND_IMAGE, KIND_VIDEO
from pipeline.settings import effective_yaml
from pipeline.summary import Result


def _args_manifest(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder with one sub-folder per search keyword")
    p.add_argument(
        "--out",
        help="manifest to write: .jsonl, .csv or .parquet (default: DIR/manifest.jsonl)",
    )
    p.add_argument(
        "--classes",
        help="classes.json (a JSON list, background first) to map folders to "
        "(default: classes.json beside --out, else the 21 PASCAL VOC classes)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")


def _label_space(classes_uri: str | None, manifest_dir: str) -> tuple[str, ...]:
    return read_classes(classes_uri) if classes_uri else load_label_space(manifest_dir)


def _place_classes(classes: tuple[str, ...], manifest_dir: str, given: bool) -> str | None:
    """Write classes.json beside the manifest (where the collection reader looks for it) when
    --classes named another file; refuse to replace a different one."""
    path = os.path.join(manifest_dir, "classes.json")
    if not given:
        return None
    if os.path.exists(path):
        if read_classes(path) != tuple(classes):
            raise ManifestError(f"{path} exists with other classes than --classes")
        return None
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(list(classes), stream, indent=1)
    return path


def manifest(args: argparse.Namespace) -> Result:

    out = args.out or os.path.join(args.dir, "manifest.jsonl")
    if os.path.exists(out) and not args.overwrite:
        raise ManifestError(f"{out} exists (--overwrite replaces it)")
    manifest_dir = os.path.dirname(os.path.abspath(out))
    classes = _label_space(args.classes, manifest_dir)
    build = build_manifest(args.dir, manifest_dir, classes)
    if not build.rows:
        raise ManifestError(
            f"no sub-folder of {args.dir} maps to the label space ({', '.join(classes[1:])}); "
            f"not mapped: {', '.join(build.unmapped) or 'no folders with images or videos'}"
        )
    written = _place_classes(classes, manifest_dir, bool(args.classes))
    write_manifest(build.rows, out)
    kinds = [row["kind"] for row in build.rows]
    values = {
        "manifest": out,
        "items": len(kinds),
        "images": kinds.count(KIND_IMAGE),
        "videos": kinds.count(KIND_VIDEO),
        "folders_mapped": len(build.mapped),
        "folders_left_out": len(build.unmapped),
        "classes_written": written,  # classes.json placed beside the manifest, if any
    }
    # the report's first line says what the table says: only its folder lists go above it
    return Result(values, details=format_report(build, out).partition("\n")[2])


def _args_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--section",
        help="one section (pseudo_label, classifier, segmenter, predict, retrain) or the command "
        "that reads it (pseudo-label, train-classifier, ...); default: all",
    )


def config(args: argparse.Namespace) -> str | dict:
    """The commented YAML itself (no summary table); with --json, the same config as JSON."""

    text = effective_yaml(args.config, args.section).rstrip("\n")
    if getattr(args, "json", False):

        return yaml.safe_load(text)
    return text


TOOL_COMMANDS = {
    "manifest": (
        manifest,
        _args_manifest,
        "build a collection manifest from a folder per search keyword (DIR/horse/*.jpg)",
    ),
    "config": (
        config,
        _args_config,
        "print the effective config (defaults + --config) as commented YAML",
    ),
}
