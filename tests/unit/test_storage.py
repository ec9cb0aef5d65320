import os

import pytest

from pipeline import storage


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b.bin"
    storage.write_bytes(str(target), b"abc")
    storage.write_bytes(str(target), b"xyz")
    assert target.read_bytes() == b"xyz"
    assert os.listdir(target.parent) == ["b.bin"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    storage.write_text(str(target), "old")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        storage.write_text(str(target), "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_resolve_and_is_within(tmp_path):
    root = str(tmp_path)
    assert storage.resolve(root, "m/a.jpg") == os.path.join(root, "m/a.jpg")
    assert storage.resolve(root, "s3://b/k.jpg") == "s3://b/k.jpg"
    assert storage.is_within(root, storage.resolve(root, "m/../a.jpg"))
    assert not storage.is_within(root, storage.resolve(root, "../../etc/passwd"))
    assert storage.is_within("s3://b/c", "s3://b/c/x") and not storage.is_within(
        "s3://b/c", "s3://b/cx"
    )


def test_list_files_and_missing_folder(tmp_path):
    storage.write_text(str(tmp_path / "p" / "1.parquet"), "x")
    storage.write_text(str(tmp_path / "p" / "2.txt"), "x")
    assert storage.list_files(str(tmp_path / "p"), ".parquet") == [
        str(tmp_path / "p" / "1.parquet")
    ]
    assert storage.list_files(str(tmp_path / "none")) == []


def test_retries_transient_errors_then_gives_up(monkeypatch):
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert storage.with_retries(flaky, "op") == "ok" and len(calls) == 3
    with pytest.raises(storage.StorageError, match="failed after"):
        storage.with_retries(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "op")
    with pytest.raises(FileNotFoundError):
        storage.with_retries(lambda: storage.read_bytes("/nonexistent/x"), "op")
