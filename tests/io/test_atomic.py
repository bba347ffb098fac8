"""The one atomic writer: a file or folder is replaced whole, and the old one is never deleted first."""

from __future__ import annotations

import os

import pytest

from rnnkit.io import atomic
from rnnkit.io.atomic import atomic_file, atomic_folder, atomic_write_text, recover_folder


def _folder(path, text):
    with atomic_folder(path) as tmp:
        (tmp / "a.txt").write_text(text)
        atomic_write_text(tmp / "b.txt", text * 2)


def test_a_folder_is_replaced_whole_and_no_temporary_is_left(tmp_path):
    _folder(tmp_path / "data", "old")
    _folder(tmp_path / "data", "new")
    assert (tmp_path / "data" / "a.txt").read_text() == "new" and (tmp_path / "data" / "b.txt").read_text() == "newnew"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_error_while_filling_leaves_the_old_folder(tmp_path):
    _folder(tmp_path / "data", "old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(tmp_path / "data") as tmp:
        (tmp / "a.txt").write_text("half")
        raise KeyboardInterrupt
    assert (tmp_path / "data" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    _folder(tmp_path / "data", "old")
    real = os.replace

    def second_rename_fails(src, dst):
        if os.path.basename(dst) == "data" and ".data.tmp-" in os.fspath(src):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        _folder(tmp_path / "data", "new")
    monkeypatch.setattr(atomic.os, "replace", real)
    assert (tmp_path / "data" / "a.txt").read_text() == "old"


def test_a_crash_between_the_renames_is_recovered_from_the_old_copy(tmp_path):
    _folder(tmp_path / "data", "old")
    os.replace(tmp_path / "data", tmp_path / ".data.old-123")  # what a crash after the first rename leaves
    recover_folder(tmp_path / "data")
    assert (tmp_path / "data" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_streamed_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "download.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("connection lost")
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["download.bin"]
    with atomic_file(target) as handle:
        handle.write(b"chunk 1, ")
        handle.write(b"chunk 2")
    assert target.read_bytes() == b"chunk 1, chunk 2"


def test_a_folder_gets_the_permissions_of_an_ordinary_folder(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    _folder(tmp_path / "data", "x")
    assert (tmp_path / "data").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
