"""WebSeg's stage lines and its progress helper (tqdm on a terminal, lines without one)."""

import io
import logging

import pytest

from pipeline import progress
from pipeline.progress import LineProgress, NoProgress, make_progress, stage


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stage_logs_start_and_end_with_count_and_seconds(caplog):
    caplog.set_level(logging.INFO, logger="webseg.stage")
    with stage("pseudo-label", total=3) as done:
        done.add(2)
        done.add()
    start, end = (r.getMessage() for r in caplog.records)
    assert start == "pseudo-label: started (3 items)"
    assert end.startswith("pseudo-label: done 3/3 items in ") and end.endswith(" s")


def test_stage_without_count_reports_seconds_only(caplog):
    caplog.set_level(logging.INFO, logger="webseg.stage")
    with stage("config", unit=""):
        pass
    assert caplog.records[-1].getMessage().startswith("config: done in ")


def test_stage_that_raises_logs_failure_and_reraises(caplog):
    caplog.set_level(logging.INFO, logger="webseg.stage")
    with pytest.raises(ValueError), stage("evaluate"):
        raise ValueError("boom")
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].getMessage().startswith("evaluate: failed after ")


def test_stage_interrupted_by_ctrl_c_says_interrupted(caplog):
    caplog.set_level(logging.INFO, logger="webseg.stage")
    with pytest.raises(KeyboardInterrupt), stage("pseudo-label"):
        raise KeyboardInterrupt
    assert caplog.records[-1].getMessage().startswith("pseudo-label: interrupted after ")


def test_without_a_terminal_progress_is_periodic_lines(caplog, monkeypatch):
    monkeypatch.setenv("WEBSEG_QUIET", "0")
    caplog.set_level(logging.INFO, logger="webseg.stage")
    bar = make_progress("pseudo-label", total=4, stream=io.StringIO())
    assert isinstance(bar, LineProgress)
    bar.interval_s = 3600  # no time-based line in this test: only the final one
    for _ in range(4):
        bar.update()
    assert [r.getMessage() for r in caplog.records] == ["pseudo-label: 4/4 items (0 s)"]


def test_line_progress_writes_at_most_one_line_per_interval(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="webseg.stage")
    clock = iter([0.0, 1.0, 11.0, 12.0, 30.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = LineProgress("train", None, "steps", interval_s=10.0)  # starts at t=0
    for _ in range(4):  # t = 1, 11, 12, 30
        bar.update()
    assert [r.getMessage() for r in caplog.records] == [
        "train: 2 steps (11 s)",
        "train: 4 steps (30 s)",
    ]


def test_on_a_terminal_progress_is_a_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setenv("WEBSEG_QUIET", "0")
    stream = _Terminal()
    with progress.progress_bar("classifier", total=2, unit="epochs", stream=stream) as bar:
        assert isinstance(bar, tqdm)
        bar.update(2)
    assert "2/2" in stream.getvalue() and "classifier" in stream.getvalue()


def test_quiet_shows_no_progress(monkeypatch):
    monkeypatch.setenv("WEBSEG_QUIET", "1")
    assert isinstance(make_progress("x", total=1, stream=_Terminal()), NoProgress)
