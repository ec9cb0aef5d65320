"""One filesystem layer for local paths and s3:// URIs.

Every read and write in WebSeg goes through here. Writes are atomic: local files are written to a
temporary name in the same folder and renamed; S3 objects appear whole when their PUT completes.
Transient errors are retried with exponential backoff. S3 endpoint and credentials come only from
the standard AWS environment variables or profile (s3fs honours AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import fsspec

T = TypeVar("T")

RETRY_ATTEMPTS = int(os.environ.get("WEBSEG_IO_RETRIES", "5"))
RETRY_BASE_DELAY_S = float(os.environ.get("WEBSEG_IO_RETRY_DELAY", "0.5"))


_UMASK = os.umask(0)
os.umask(_UMASK)


class StorageError(RuntimeError):
    """An I/O operation failed after its retries."""


def _connection_errors() -> tuple[type[Exception], ...]:
    """botocore's errors for an endpoint that is down or unreachable (s3fs raises them as is)."""
    try:
        # deferred: botocore comes with the optional S3 extra
        from botocore import exceptions
    except ImportError:
        return ()
    return exceptions.ConnectionError, exceptions.HTTPClientError


_CONNECTION_ERRORS = _connection_errors()


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _strip_file_scheme(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path within it."""
    uri = _strip_file_scheme(uri)
    if not is_remote(uri):
        return fsspec.filesystem("file"), os.path.abspath(uri)
    # no listings cache: other processes (Ray workers, a killed run) write the same prefixes
    fs, path = fsspec.core.url_to_fs(uri, use_listings_cache=False)
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with forward slashes."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(_strip_file_scheme(base), *parts)


def dirname(uri: str) -> str:
    return posixpath.dirname(uri) if is_remote(uri) else os.path.dirname(_strip_file_scheme(uri))


def resolve(base_dir: str, uri: str) -> str:
    """Resolve a manifest uri against the manifest's folder (absolute and s3:// pass through)."""
    if is_remote(uri) or os.path.isabs(uri):
        return uri
    return join(base_dir, uri)


def is_within(root: str, uri: str) -> bool:
    """Whether uri lies inside root, after normalising '..' segments."""
    if is_remote(root) != is_remote(uri):
        return False
    if is_remote(root):
        root_n, uri_n = (
            posixpath.normpath(root.split("://", 1)[1]),
            posixpath.normpath(uri.split("://", 1)[1]),
        )
        same_scheme = root.split("://", 1)[0] == uri.split("://", 1)[0]
        return same_scheme and (uri_n == root_n or uri_n.startswith(root_n + "/"))
    root_n = os.path.realpath(_strip_file_scheme(root))
    uri_n = os.path.realpath(_strip_file_scheme(uri))
    return uri_n == root_n or uri_n.startswith(root_n + os.sep)


def with_retries(operation: Callable[[], T], what: str) -> T:
    """Run operation, retrying transient errors with exponential backoff.

    FileNotFoundError and permission errors are not transient and raise at once.
    """
    delay = RETRY_BASE_DELAY_S
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return operation()
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
            raise
        except (OSError, *_CONNECTION_ERRORS) as error:  # s3fs maps most S3 errors to OSError
            if attempt == RETRY_ATTEMPTS:
                raise StorageError(f"{what} failed after {attempt} attempts: {error}") from error
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return with_retries(lambda: fs.exists(path), f"exists {uri}")


def size(uri: str) -> int:
    fs, path = filesystem(uri)
    return int(with_retries(lambda: fs.size(path), f"size {uri}"))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return with_retries(lambda: fs.cat_file(path), f"read {uri}")


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write data to uri atomically: readers see the old object, or the whole new one."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        with_retries(lambda: fs.pipe_file(path, data), f"write {uri}")
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    # the suffix keeps a temp file left by a killed job out of list_files(..., ".parquet")
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Full URIs of the files directly under a folder/prefix (empty when it does not exist)."""
    fs, path = filesystem(uri)
    try:
        entries = with_retries(lambda: fs.ls(path, detail=True), f"list {uri}")
    except FileNotFoundError:
        return []
    names = [e["name"] for e in entries if e.get("type") == "file" and e["name"].endswith(suffix)]
    if not is_remote(uri):
        return sorted(names)
    scheme = uri.split("://", 1)[0]
    return sorted(f"{scheme}://{name}" for name in names)


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    with contextlib.suppress(FileNotFoundError):
        with_retries(lambda: fs.rm(path), f"remove {uri}")


def makedirs(uri: str) -> None:
    if not is_remote(uri):
        os.makedirs(_strip_file_scheme(uri), exist_ok=True)


@contextlib.contextmanager
def local_copy(uri: str, suffix: str = "") -> Iterator[str]:
    """A local file path holding uri's content (the file itself when uri is local)."""
    if not is_remote(uri):
        yield _strip_file_scheme(uri)
        return
    handle, tmp = tempfile.mkstemp(suffix=suffix or posixpath.splitext(uri)[1])
    os.close(handle)
    try:
        fs, path = filesystem(uri)
        with_retries(lambda: fs.get_file(path, tmp), f"download {uri}")
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def unique_name(prefix: str = "", suffix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}{suffix}"
