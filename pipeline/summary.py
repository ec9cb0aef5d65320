"""The summary every `webseg` command ends with: a short two-column table, or JSON with `--json`.

A command's handler returns its result as a dict (or a `Result`: the dict plus text shown above
the table only); `render` turns it into

    summary: train-segmenter
    ------------------------------------------------
    val mIoU (%)           61.4
    epochs                 3
    wall time (s)          84.2

or, with `as_json`, the same dict as JSON under the keys the commands have always printed.

One unit for quality metrics: IoU, mIoU, J, AP/mAP, coverage and scores are percent (0-100, one
decimal) in both forms. Results that hold 0-1 fractions (FRACTIONS: train-classifier's mAP and APs,
train-segmenter's val_miou) are converted here, so the JSON of `train-segmenter` says
`"val_miou": 61.4`, as `evaluate` says `"image_miou": 51.8`. Times are seconds. Pure Python: no
torch, Ray or MLflow.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Result keys each command returns as 0-1 fractions; `render` prints them as percent.
FRACTIONS: dict[str, tuple[str, ...]] = {
    "train-classifier": ("map", "per_class_ap"),
    "train-segmenter": ("val_miou",),
}
# Keys (at any depth) whose values are percent once FRACTIONS are converted: labelled "(%)".
PERCENT = frozenset({
    "image_miou", "image_miou_confident", "coverage", "frame_miou", "frame_coverage",
    "per_class_iou", "j", "j_relevant", "mean_video_j", "mean_video_j_relevant", "val_miou",
    "map", "per_class_ap", "score",
})  # fmt: skip
SECONDS = frozenset({"wall_seconds", "wall_s", "seconds"})  # labelled "(s)"
TIMESTAMPS = frozenset({"finished", "started"})  # Unix times, shown as UTC
LABELS = {
    "image_miou": "image mIoU",
    "image_miou_confident": "image mIoU, confident rows",
    "per_class_iou": "IoU per class",
    "frame_miou": "frame mIoU",
    "mean_video_j": "mean video J",
    "mean_video_j_relevant": "mean video J, fg frames",
    "j": "J",
    "j_relevant": "J, fg frames",
    "val_miou": "val mIoU",
    "map": "train mAP",
    "per_class_ap": "train AP per class",
    "wall_seconds": "wall time",
    "wall_s": "wall time",
    "mlflow_run_id": "MLflow run",
    "tracking_uri": "MLflow store",
    "model_uri": "model",
    "registered_model_uri": "registered model",
    "samples_per_s": "samples/s",
    "seconds": "time",
    "status_counts": "rows",
    "mlflow_ui": "open MLflow with",
    "failed_reasons": "failed reasons",
    "relevant_frames": "relevant frames",
    "checkpoint_uri": "checkpoint",
    "init_from": "init from",
}
# Keys of a result left out of the table as a count ("3 videos, table above"), kept in --json.
COLLAPSED: dict[str, tuple[str, ...]] = {"evaluate": ("per_class_iou", "videos")}
INLINE_WIDTH = 64  # a dict of scalars up to this width is one row: "labelled 45, failed 2"
MAX_ROWS = 12  # a nested dict with more entries is shown as a count (all of it in --json)
RULE = 48
JSON_HELP = (
    "print the command's result as JSON instead of the summary table (same keys as always; "
    "IoU, mIoU, J, AP and coverage in percent 0-100, times in seconds)"
)


@dataclass(frozen=True)
class Result:
    """A command's result: `values` (the table / JSON) and `details`, text shown above the table
    and left out of --json (e.g. evaluate's per-video table)."""

    values: dict[str, Any]
    details: str = ""
    collapsed: tuple[str, ...] = field(default=())


def to_percent(values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """values with each of `keys` (a 0-1 fraction, or a dict of them) as percent, one decimal."""
    out = dict(values)
    for key in keys:
        if key in out:
            out[key] = _percent(out[key])
    return out


def _percent(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _percent(v) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return round(100.0 * value, 1) if math.isfinite(value) else None


def normalise(command: str, result: Result | Mapping[str, Any]) -> Result:
    """The result as a `Result` in one unit: FRACTIONS converted to percent."""
    if not isinstance(result, Result):
        result = Result(dict(result))
    values = to_percent(result.values, FRACTIONS.get(command, ()))
    collapsed = result.collapsed or COLLAPSED.get(command, ())
    return Result(values, result.details, collapsed)


def render(command: str, result: Result | Mapping[str, Any], as_json: bool = False) -> str:
    """The text `webseg COMMAND` ends with: the summary table, or JSON when as_json."""
    result = normalise(command, result)
    if as_json:
        return to_json(result.values)
    table = format_table(result.values, title=f"summary: {command}", collapsed=result.collapsed)
    return f"{result.details.rstrip()}\n\n{table}" if result.details.strip() else table


def to_json(values: Mapping[str, Any]) -> str:
    """Strict JSON (NaN and infinities become null), indented."""
    return json.dumps(_finite(values), indent=2, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def format_table(
    values: Mapping[str, Any], title: str | None = None, collapsed: tuple[str, ...] = ()
) -> str:
    """Rows `label  value`, aligned, percent metrics first; nested dicts indented under their key."""
    rows: list[tuple[str, str]] = []
    order = sorted(values, key=lambda key: key not in PERCENT)  # stable: otherwise as given
    for key, value in ((key, values[key]) for key in order):
        if key in collapsed:
            rows.append((LABELS.get(key, key.replace("_", " ")), _collapsed(key, value)))
        else:
            _rows(str(key), value, 0, key in PERCENT, rows)
    width = max((len(name) for name, _ in rows), default=0) + 2
    lines = [f"{name:<{width}}{text}".rstrip() for name, text in rows]
    if title:
        lines = [title, "-" * max(RULE, min(72, max(map(len, lines), default=0))), *lines]
    return "\n".join(lines)


def label(key: str, percent: bool = False, depth: int = 0) -> str:
    """A result key as its table label, with its unit: 'val_miou' -> 'val mIoU (%)'. Nested keys
    may be data (class names, video ids): only LABELS renames them."""
    text = LABELS.get(key, key.replace("_", " ") if depth == 0 else key)
    if percent or key in PERCENT:
        return f"{text} (%)"
    return f"{text} (s)" if key in SECONDS else text


def _rows(key: str, value: Any, depth: int, percent: bool, rows: list) -> None:
    name = "  " * depth + label(key, depth=depth)  # "(%)" on the percent key, not its children
    percent = percent or key in PERCENT
    if isinstance(value, Mapping) and value:
        inline = _inline(value, percent, seconds=key in SECONDS)
        if inline is not None and len(inline) <= INLINE_WIDTH:
            rows.append((name, inline))
        elif len(value) > MAX_ROWS:
            rows.append((name, f"{len(value)} entries (all of them in --json)"))
        else:
            rows.append((name, ""))
            for child, item in value.items():
                _rows(str(child), item, depth + 1, percent, rows)
    elif key in TIMESTAMPS and isinstance(value, int | float) and not isinstance(value, bool):
        rows.append((name, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))))
    else:
        rows.append((name, format_value(value, percent, seconds=key in SECONDS)))


def _inline(value: Mapping, percent: bool, seconds: bool) -> str | None:
    """'labelled 45, filtered 3' for a dict of scalars; None when a value is itself a dict."""
    if any(isinstance(v, Mapping | list | tuple) for v in value.values()):
        return None
    cells = []
    for key, item in value.items():
        text = format_value(item, percent or key in PERCENT, seconds or key in SECONDS)
        unit = ""  # a child's own unit, where the row's label does not give it
        if item is not None and key in PERCENT and not percent:
            unit = "%"
        elif item is not None and key in SECONDS and not seconds:
            unit = " s"
        cells.append(f"{LABELS.get(key, key)} {text}{unit}")
    return ", ".join(cells)


def _collapsed(key: str, value: Any) -> str:
    if not isinstance(value, Mapping | list | tuple):
        return format_value(value, key in PERCENT, key in SECONDS)
    if not value:
        return "none"
    noun = {"per_class_iou": "class"}.get(key, "")
    plural = "" if not noun else f" {noun}" if len(value) == 1 else f" {noun}es"
    return f"{len(value)}{plural} (table above; all in --json)"


def format_value(value: Any, percent: bool = False, seconds: bool = False) -> str:
    """One cell: percent and seconds with one decimal, other floats with 4 significant digits
    (whole numbers from 10000 on)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if percent or seconds:
            return f"{value:.1f}"
        return f"{value:.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
    if isinstance(value, Mapping):
        return "none" if not value else f"{len(value)} entries"
    if isinstance(value, list | tuple):
        if not value:
            return "none"
        text = ", ".join(format_value(v, percent, seconds) for v in value)
        return text if len(text) <= INLINE_WIDTH else f"{len(value)} items"
    return str(value)
