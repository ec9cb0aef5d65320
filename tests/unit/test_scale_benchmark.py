"""benchmarks/scale.py's split loop: the halves cover every item once and merge to the whole."""

import importlib.util
from pathlib import Path

SCALE = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def _scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCALE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figures(wall, items, cpu, busy, pss, stages):
    return {
        "wall_s": wall, "items": items, "rows": 2 * items, "own_cpu_s": cpu,
        "cpu_busy_pct": busy, "own_cpu_busy_pct": busy, "peak_rss_mib": pss + 10,
        "peak_pss_mib": pss, "cpu_s_by_process": {"python scale.py": cpu},
        "stage_seconds": stages, "peak_pss_mib_by_process": {"python scale.py": pss},
    }  # fmt: skip


def test_the_two_halves_hold_every_item_once_in_order():
    half = _scale().half
    items = list(range(7))
    assert half(items, "first") + half(items, "second") == items
    assert half(items, "all") == items


def test_merged_halves_sum_times_and_weight_busy_shares_by_wall():
    scale = _scale()
    first = _figures(100.0, 10, 98.0, 50.0, 500.0, {"cam": 40.0, "refine": 50.0})
    second = _figures(300.0, 10, 290.0, 90.0, 700.0, {"cam": 140.0, "refine": 150.0})
    whole = scale.merged(first, second)
    assert whole["wall_s"] == 400.0 and whole["items"] == 20 and whole["rows"] == 40
    assert whole["items_per_s"] == 0.05
    assert whole["cpu_busy_pct"] == 80.0  # (50 x 100 + 90 x 300) / 400
    assert whole["own_cpu_s"] == 388.0
    assert whole["stage_seconds"] == {"cam": 180.0, "refine": 200.0}
    assert whole["peak_pss_mib"] == 700.0  # a peak is the larger, not a sum
    assert whole["peak_pss_mib_by_process"] == {"python scale.py": 700.0}
    assert whole["halves_wall_s"] == [100.0, 300.0]
