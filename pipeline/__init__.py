"""WebSeg: pixel pseudo-labels from web images and videos tagged with keywords, on Ray.

The public API, imported lazily (PEP 562) so that `import pipeline` stays light (no torch, Ray
or MLflow until a function is used):

    from pipeline import build_manifest, load_settings, train_classifier, pseudo_label
    from pipeline import evaluate_labels, format_table, build_report, train_segmenter

Names follow their modules (`evaluate_labels`, not `evaluate`: `pipeline.evaluate` is a package).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

# public name -> (module, attribute)
PUBLIC_API = {
    "load_settings": ("pipeline.settings", "load_settings"),
    "effective_yaml": ("pipeline.settings", "effective_yaml"),
    "build_manifest": ("pipeline.manifest_builder", "build_manifest"),
    "write_manifest": ("pipeline.manifest_builder", "write_manifest"),
    "read_collection": ("pipeline.collection", "read_collection"),
    "init_ray": ("pipeline.cluster.runtime", "init_ray"),
    "train_classifier": ("pipeline.api", "train_classifier"),
    "pseudo_label": ("pipeline.api", "pseudo_label"),
    "evaluate_labels": ("pipeline.evaluate.score", "evaluate_labels"),
    "format_table": ("pipeline.evaluate.summary", "format_table"),
    "build_report": ("pipeline.report.build", "build_report"),
    "train_segmenter": ("pipeline.api", "train_segmenter"),
    "stage": ("pipeline.progress", "stage"),
}

__all__ = [*PUBLIC_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":

        return metadata.version("webseg")
    if name not in PUBLIC_API:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    module_name, attribute = PUBLIC_API[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC_API])
