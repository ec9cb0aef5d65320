"""Known harmless lines that Ray's C++ core writes straight to the process's stderr (file
descriptor 2), below Python's logging, dropped on their way to the terminal.

Ray prints "Actor ... has constructor arguments in the object store and max_restarts > 0" at ERROR
once per Ray Data actor pool and Ray Train run (ray-project/ray#53727): Ray Data puts every
actor's constructor arguments there itself, so a user can do nothing about it. Hiding it with
RAY_BACKEND_LOG_LEVEL would hide every C++ error and makes each Ray process print a line of its
own. Only the `webseg` program filters (not `main([...])` called in-process, not with -v): fd 2
goes through a pipe read by one thread that passes every other byte on unchanged.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RAY_CPP_NOTICES = (b"has constructor arguments in the object store and max_restarts",)
JOIN_SECONDS = 5.0


def drop_lines(buffer: bytes, fragments: tuple[bytes, ...]) -> tuple[bytes, bytes]:
    """(bytes to pass on, bytes held back) for a buffer read from stderr.

    Whole lines containing a fragment are dropped; a trailing partial line is held until its
    newline, unless it holds a carriage return (a progress bar redrawing itself), which passes.
    """
    *lines, partial = buffer.split(b"\n")
    out = b"".join(line + b"\n" for line in lines if not any(f in line for f in fragments))
    if b"\r" in partial and not any(f in partial for f in fragments):
        return out + partial, b""
    return out, partial


def _pump(read_fd: int, out_fd: int, fragments: tuple[bytes, ...]) -> None:
    held = b""
    while chunk := os.read(read_fd, 65536):
        out, held = drop_lines(held + chunk, fragments)
        _write(out_fd, out)
    _write(out_fd, b"" if any(f in held for f in fragments) else held)
    os.close(read_fd)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the terminal went away: keep draining so writers never block
        pass


@contextmanager
def filtered_stderr(fragments: tuple[bytes, ...] = RAY_CPP_NOTICES) -> Iterator[None]:
    """Within the block, lines of fd 2 that contain one of fragments are dropped."""
    if not fragments:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(
        target=_pump, args=(read_fd, saved, fragments), name="webseg-stderr", daemon=True
    )
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump reads to its end and stops
        pump.join(JOIN_SECONDS)
        if not pump.is_alive():
            os.close(saved)
