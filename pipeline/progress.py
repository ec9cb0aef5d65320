"""WebSeg's own voice on the driver: one line when a stage starts and one when it ends, and a
progress bar of items or epochs done (tqdm on a terminal, a line every few seconds without one).

    with stage("pseudo-label", total=len(items)) as done:
        for batch in batches:
            ...
            done.add(len(batch))
    # 12:00:01 INFO webseg.stage: pseudo-label: started (50 items)
    # 12:00:25 INFO webseg.stage: pseudo-label: done 50/50 items in 24.1 s

    with progress_bar("classifier", total=12, unit="epoch") as bar:
        bar.update(1)            # per epoch, on the driver

Both are driver-side only: call them where the driver learns of progress (a Ray Data iterator, a
Ray Train result), never inside a Ray task or actor.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from pipeline.logs import progress_wanted

log = logging.getLogger("webseg.stage")

LINE_INTERVAL_S = 10.0  # without a terminal, one progress line at most this often


@dataclass
class StageCount:
    """What a stage has done so far; `add` it as work completes (the end line reports it)."""

    name: str
    total: int | None = None
    unit: str = "items"
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, count: int = 1) -> None:
        self.done += count

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        """'30/50 items in 24.1 s', or 'in 24.1 s' for a stage that counted nothing."""
        if self.total is None and self.done == 0:
            return f"in {self.seconds():.1f} s"
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return f"{count} {self.unit} in {self.seconds():.1f} s".replace("  ", " ")


@contextmanager
def stage(name: str, total: int | None = None, unit: str = "items") -> Iterator[StageCount]:
    """Log `name: started` and `name: done N/TOTAL unit in S s` (or `name: failed after S s`,
    `interrupted` for Ctrl-C and SIGTERM)."""
    count = StageCount(name, total, unit)
    log.info("%s: started%s", name, f" ({total} {unit})" if total is not None else "")
    try:
        yield count
    except BaseException as error:
        how = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        log.warning("%s: %s after %.1f s", name, how, count.seconds())
        raise
    log.info("%s: done %s", name, count.summary())


class LineProgress:
    """tqdm's update/close interface as periodic log lines, for logs that are not a terminal."""

    def __init__(self, desc: str, total: int | None, unit: str, interval_s: float):
        self.desc, self.total, self.unit, self.interval_s = desc, total, unit, interval_s
        self.n = 0
        self.started = self.last_line = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self.last_line >= self.interval_s or self.n == self.total:
            self.last_line = now
            self._line(now)

    def _line(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        log.info("%s: %s %s (%.0f s)", self.desc, count, self.unit, now - self.started)

    def close(self) -> None:
        pass


class NoProgress:
    """The progress interface that shows nothing (--quiet)."""

    n = 0

    def update(self, count: int = 1) -> None:
        self.n += count

    def close(self) -> None:
        pass


def make_progress(desc: str, total: int | None = None, unit: str = "items", stream=None):
    """A tqdm bar on a terminal, LineProgress without one, NoProgress with --quiet."""
    stream = stream or sys.stderr
    if not progress_wanted():
        return NoProgress()
    if not stream.isatty():
        return LineProgress(desc, total, unit, LINE_INTERVAL_S)

    return tqdm(total=total, desc=desc, unit=f" {unit}", file=stream, dynamic_ncols=True)


@contextmanager
def progress_bar(desc: str, total: int | None = None, unit: str = "items", stream=None):
    """make_progress as a context manager: the bar is closed however the block ends."""
    bar = make_progress(desc, total, unit, stream)
    try:
        yield bar
    finally:
        bar.close()
