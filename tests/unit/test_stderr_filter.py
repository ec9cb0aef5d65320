"""Ray's C++ notice lines are dropped from fd 2; every other byte passes unchanged."""

import subprocess
import sys
import textwrap

from pipeline.stderr_filter import RAY_CPP_NOTICES, drop_lines

NOTICE = (
    b"[2026-12-04 19:53:41,321 E 9479 9479] core_worker.cc:2465: Actor with class name: "
    b"'MapWorker(MapBatches(CamStage))' and ID: 'a5' has constructor arguments in the object "
    b"store and max_restarts > 0. If the arguments ... See https://github.com/ray-project/ray/"
    b"issues/53727 for more details."
)


def test_a_notice_line_is_dropped_and_its_neighbours_kept():
    out, held = drop_lines(b"first\n" + NOTICE + b"\nlast\n", RAY_CPP_NOTICES)
    assert (out, held) == (b"first\nlast\n", b"")


def test_a_partial_line_waits_for_its_newline_unless_it_redraws_a_progress_bar():
    assert drop_lines(b"done\n[2026-12-04 19:53 E 1 1] core_wor", RAY_CPP_NOTICES) == (
        b"done\n",
        b"[2026-12-04 19:53 E 1 1] core_wor",
    )
    assert drop_lines(b"\r 8/56 items", RAY_CPP_NOTICES) == (b"\r 8/56 items", b"")


def test_the_filter_drops_notices_written_below_python_and_restores_stderr():
    head, tail = NOTICE[:40], NOTICE[40:] + b"\n"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pipeline.stderr_filter import filtered_stderr
        with filtered_stderr():
            os.write(2, b"kept 1\\n")
            os.write(2, {head!r})  # a C++ line arriving in two writes
            os.write(2, {tail!r})
            print("kept 2", file=sys.stderr)
            sys.stderr.write("\\r 3/9 items")
        os.write(2, b"\\nafter\\n")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"kept 1\nkept 2\n\r 3/9 items\nafter\n"
