"""The base of the Ray Data stage adapters (in the style of datatrove's filters): a stage says what it
computes for one row (or, for a batching stage, for the batch's live rows); the base does the rest.

The base iterates a numpy batch's rows in order, passes the rows a stage does not work on (failed
ones) through, turns an exception a stage declares in `errors` into a failed row with its reason,
times the stage into the column `seconds_<timing>` and builds the output batch. No Ray import: the
adapters run as plain callables in tests and benchmarks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.rows import iter_rows, to_batch

Row = dict[str, Any]


class Stage:
    """One output row list per input row: `compute(row)`, timed row by row.

    A row for which `passes(row)` holds (default: status failed) becomes `pass_through(row)` (default:
    the row as it is); an exception of a type in `errors` raised by `compute` becomes
    `failed(row, reason(error))`. An input row's seconds are shared equally among its output rows
    (a video decoded into windows is timed once, not once per window)."""

    timing: str | None = None  # the stage's name in its timing column; None: no timing column
    tensors: tuple[str, ...] = ()  # columns holding ndarrays (see rows.to_batch)
    errors: tuple[type[Exception], ...] = ()  # what one bad row may raise; anything else propagates

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        return self.output(self.process([self.prepare(row) for row in iter_rows(batch)]))

    def process(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            started = time.perf_counter()
            produced = self._one(row)
            seconds = (time.perf_counter() - started) / max(1, len(produced))
            out.extend(self.timed(r, seconds) for r in produced)
        return out

    def _one(self, row: Row) -> list[Row]:
        if self.passes(row):
            return [self.pass_through(row)]
        try:
            return self.compute(row)
        except self.errors as error:
            return [self.failed(row, self.reason(error))]

    def compute(self, row: Row) -> list[Row]:
        """What the stage computes for one live row: its output rows."""
        raise NotImplementedError

    def prepare(self, row: Row) -> Row:
        """An input row before anything else looks at it (default: as it is)."""
        return row

    def passes(self, row: Row) -> bool:
        return row[schema.STATUS] == schema.FAILED

    def pass_through(self, row: Row) -> Row:
        return row

    def failed(self, row: Row, reason: str) -> Row:
        return {**row, schema.STATUS: schema.FAILED, schema.REASON: reason}

    def reason(self, error: Exception) -> str:
        return str(error) or repr(error)

    def timed(self, row: Row, seconds: float) -> Row:
        return {**row, f"{schema.TIMING_PREFIX}{self.timing}": seconds} if self.timing else row

    def output(self, rows: list[Row]) -> Any:
        return to_batch(rows, self.tensors)


class BatchStage(Stage):
    """All live rows of a batch in one `compute_batch` call (a model sees full batches).

    The call's seconds are shared out over its output rows in proportion to `weight(row)` (default
    1 per row); passed-through rows get 0 seconds. Row order is kept."""

    def compute_batch(self, live: list[Row]) -> list[list[Row]]:
        """One list of output rows per live row, in order."""
        raise NotImplementedError

    def weight(self, row: Row) -> float:
        return 1.0

    def process(self, rows: list[Row]) -> list[Row]:
        started = time.perf_counter()
        live = [not self.passes(row) for row in rows]
        computed = iter(self.compute_batch([row for row, on in zip(rows, live, strict=True) if on]))
        elapsed = time.perf_counter() - started
        groups = [
            next(computed) if on else [self.pass_through(row)]
            for row, on in zip(rows, live, strict=True)
        ]
        share = elapsed / max(
            1, sum(self.weight(r) for g, on in zip(groups, live, strict=True) if on for r in g)
        )
        return [
            self.timed(r, share * self.weight(r) if on else 0.0)
            for g, on in zip(groups, live, strict=True)
            for r in g
        ]
