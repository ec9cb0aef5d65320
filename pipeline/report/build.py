"""A single self-contained HTML page for eyeballing a pseudo-label set.

    python -m pipeline.report.build LABELS [--collection COLLECTION] [--out report.html] [--max-items 48]

Shows status counts, scores (when the collection has gt/), a grid image | CAM | mask overlay |
mask | ground truth for a spread of labelled items, filtered video frames with scores and reasons,
and failed items with reasons. Thumbnails are inline base64 JPEGs, so the page travels alone.
"""

from __future__ import annotations

import argparse

import numpy as np

from pipeline import schema, storage
from pipeline.collection import load_label_space
from pipeline.evaluate.inputs import read_manifest
from pipeline.evaluate.score import evaluate_labels
from pipeline.report.page import (
    CSS,
    PAGE,
    ReportConfig,
    escape_html,
    html_grid,
    html_swatch,
    html_table,
    scores_html,
    status_lists_html,
)
from pipeline.report.sources import ReportSources
from pipeline.schema import IGNORE

REPORT_NAME = "report.html"


def pick_spread(rows: list[dict], count: int) -> list[dict]:
    """Up to count rows evenly spaced over the list (keeps the image/frame/video mix)."""
    if len(rows) <= count:
        return list(rows)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]


def build_report(
    labels_uri: str,
    collection_uri: str | None,
    out_uri: str | None = None,
    max_items: int = 48,
    cfg: ReportConfig | None = None,
) -> str:
    """Writes the HTML report (default LABELS/report.html) and returns the URI written.

    collection_uri resolves relative media URIs and supplies gt/ and classes.json; with None the
    page shows masks, and sources only where the manifest's URIs are absolute.
    """
    cfg, rows = cfg or ReportConfig(), read_manifest(labels_uri)
    classes = list(load_label_space(collection_uri) if collection_uri else schema.VOC_CLASSES)
    has_gt = bool(collection_uri) and storage.exists(storage.join(collection_uri, "gt"))
    by_status = {s: [r for r in rows if r[schema.STATUS] == s] for s in schema.STATUSES}
    picked = pick_spread(
        [r for r in by_status[schema.LABELLED] if r.get(schema.MASK_URI)], max_items
    )
    sources = ReportSources(collection_uri, picked + by_status[schema.FILTERED][: cfg.max_rows])
    counts = [[escape_html(s), str(len(r))] for s, r in by_status.items()]
    parts = [
        f"<h1>WebSeg label report</h1><p>labels: {escape_html(labels_uri)}<br>"
        f"collection: {escape_html(collection_uri)}</p><h2>Status</h2>{html_table(['status', 'rows'], counts)}"
    ]
    if has_gt:
        result = evaluate_labels(labels_uri, collection_uri)
        parts.append("<h2>Scores against ground truth</h2>" + scores_html(result, classes))
    legend = "".join(
        f"{html_swatch(i)}{escape_html(n)}"
        for i, n in [*enumerate(classes[:IGNORE]), (IGNORE, "ignore")]
    )
    parts.append(f"<h2>Labelled items ({len(picked)} of {len(by_status[schema.LABELLED])})</h2>")
    parts.append(
        f"<p>{legend}</p>" + html_grid(labels_uri, collection_uri, picked, sources, has_gt, cfg)
    )
    parts.append(
        status_lists_html(by_status[schema.FILTERED], by_status[schema.FAILED], sources, cfg)
    )
    run_uri = storage.join(labels_uri, schema.RUN_NAME)
    if storage.exists(run_uri):
        run = escape_html(storage.read_text(run_uri))
        parts.append(f"<h2>run.json</h2><details><summary>show</summary><pre>{run}</pre></details>")
    out_uri = out_uri or storage.join(labels_uri, REPORT_NAME)
    storage.write_text(out_uri, PAGE.format(css=CSS, body="".join(parts)))
    return out_uri


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("--collection", help="resolves media, supplies gt/ and classes.json")
    parser.add_argument("--out", help="default LABELS/report.html")
    parser.add_argument("--max-items", type=int, default=48)
    args = parser.parse_args(argv)
    uri = build_report(args.labels, args.collection, args.out, args.max_items)
    print(uri)
    return uri


if __name__ == "__main__":
    main()
