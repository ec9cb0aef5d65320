"""The stage adapter base without Ray: plain dict batches in, batches out."""

from __future__ import annotations

import numpy as np

from pipeline import schema
from pipeline.cluster.stage_base import BatchStage, Stage
from pipeline.rows import to_batch

SECONDS = f"{schema.TIMING_PREFIX}double"


def _batch(*rows: tuple[str, str]) -> dict[str, np.ndarray]:
    return to_batch([{schema.ID: i, schema.STATUS: s, schema.REASON: "", "x": 1} for i, s in rows])


class Double(Stage):
    timing, errors = "double", (ValueError,)

    def compute(self, row):
        if row[schema.ID] == "bad":
            raise ValueError("cannot double bad")
        return [{**row, "x": 2 * row["x"]}] * (2 if row[schema.ID] == "two" else 1)


def test_failed_row_passes_through_untouched_with_its_timing():
    out = Double()(_batch(("a", ""), ("f", schema.FAILED)))
    assert out["x"].tolist() == [2, 1]
    assert out[schema.STATUS].tolist() == ["", schema.FAILED]
    assert SECONDS in out and (out[SECONDS] >= 0).all()


def test_declared_error_becomes_a_failed_row_with_its_reason_in_order():
    out = Double()(_batch(("a", ""), ("bad", ""), ("two", ""), ("c", "")))
    assert out[schema.ID].tolist() == ["a", "bad", "two", "two", "c"]
    assert out[schema.STATUS].tolist() == ["", schema.FAILED, "", "", ""]
    assert out[schema.REASON].tolist() == ["", "cannot double bad", "", "", ""]
    assert out["x"].tolist() == [2, 1, 2, 2, 2]
    assert out[SECONDS][2] == out[SECONDS][3]  # both rows of one input row share its seconds


def test_an_input_rows_seconds_are_shared_among_its_output_rows(monkeypatch):
    import itertools

    from pipeline.cluster import stage_base

    ticks = itertools.count()
    monkeypatch.setattr(stage_base.time, "perf_counter", lambda: float(next(ticks)))
    out = Double()(_batch(("a", ""), ("two", "")))
    assert out[SECONDS].tolist() == [1.0, 0.5, 0.5]  # one second per input row, once in total


def test_undeclared_error_propagates():
    class Strict(Double):
        errors = ()

    try:
        Strict()(_batch(("bad", "")))
    except ValueError as error:
        assert "bad" in str(error)
    else:
        raise AssertionError("expected the ValueError to propagate")


def test_no_timing_column_without_a_name():
    class Untimed(Double):
        timing = None

    assert set(Untimed()(_batch(("a", "")))) == {schema.ID, schema.STATUS, schema.REASON, "x"}


class Sum(BatchStage):
    timing = "sum"

    def __init__(self):
        self.calls = []

    def compute_batch(self, live):
        self.calls.append([r[schema.ID] for r in live])
        return [[{**r, "x": len(live)}] for r in live]

    def weight(self, row):
        return 3.0 if row[schema.ID] == "heavy" else 1.0


def test_batch_stage_sees_live_rows_once_and_keeps_order():
    stage = Sum()
    out = stage(_batch(("a", ""), ("f", schema.FAILED), ("heavy", "")))
    assert stage.calls == [["a", "heavy"]]
    assert out[schema.ID].tolist() == ["a", "f", "heavy"]
    assert out["x"].tolist() == [2, 1, 2]
    seconds = out[f"{schema.TIMING_PREFIX}sum"]
    assert seconds[1] == 0.0 and np.isclose(seconds[2], 3 * seconds[0])


def test_empty_batch_is_empty():
    assert Double()({}) == {} and Sum()({}) == {}
