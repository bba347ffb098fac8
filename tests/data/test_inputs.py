"""Corpus inputs: one file read as it is, a folder in sorted order with a separator, bad inputs refused."""

from __future__ import annotations

import pytest

from rnnkit.data import inputs
from rnnkit.data.inputs import FILE_SEPARATOR, open_input
from rnnkit.errors import DataError, UsageError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "src"
    (root / "pkg" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "site-packages").mkdir()
    (root / "b.py").write_text("def b():\n\treturn 2\n")
    (root / "a.py").write_text("def a():\n    return 1")  # no final line break
    (root / "pkg" / "deep" / "c.py").write_text("C = 3\n")
    (root / "pkg" / "blob.py").write_bytes(b"\x00\x01\x02")
    (root / "pkg" / "latin.py").write_bytes("caf\u00e9 = 1\n".encode("cp1252"))
    (root / "notes.txt").write_text("not python\n")
    (root / ".hidden.py").write_text("hidden = 1\n")
    (root / ".git" / "x.py").write_text("git = 1\n")
    (root / "site-packages" / "s.py").write_text("s = 1\n")
    return root


def test_a_folder_is_read_in_sorted_order_with_an_empty_line_between_files(tree, tmp_path):
    corpus = open_input(tree, tmp_path / "spool", glob="*.py", exclude="site-packages")
    assert [f.name for f in corpus.files] == ["a.py", "b.py", "pkg/deep/c.py"]
    assert corpus.skipped == {inputs.BINARY: 1, inputs.NOT_UTF8: 1}
    assert corpus.skipped_names == ["pkg/blob.py", "pkg/latin.py"]
    assert FILE_SEPARATOR == "\n"
    assert corpus.text() == "def a():\n    return 1\n\ndef b():\n\treturn 2\n\nC = 3\n"
    # The checksum covers names and contents: renaming a file changes it.
    (tree / "pkg" / "deep" / "c.py").rename(tree / "pkg" / "deep" / "d.py")
    assert open_input(tree, tmp_path / "spool", glob="*.py", exclude="site-packages").sha256 != corpus.sha256


def test_a_single_file_is_read_exactly_as_it_is(tree, tmp_path):
    corpus = open_input(tree / "a.py", tmp_path / "spool")
    assert corpus.kind == "file" and corpus.text() == "def a():\n    return 1"


def test_invalid_bytes_are_counted_with_their_exact_offset_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "CHUNK_BYTES", 7)
    path = tmp_path / "t.txt"
    data = "\u00e9t\u00e9 ".encode() * 40 + b"\xff" + b"ok " * 300  # 2-byte characters cut by the chunks
    path.write_bytes(data)
    corpus = open_input(path, tmp_path)
    assert corpus.files[0].invalid_bytes == 1 and corpus.first_invalid == ("t.txt", data.index(b"\xff"))
    assert corpus.text() == data.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "the folder holds no files"),
    (lambda d: (d / "x.txt").write_text("text\n"), r"no file name matches '\*.py' among its 1 files"),
    (lambda d: (d / "x.py").write_bytes(b"\x00"), r"none of the 1 files matching '\*.py' is UTF-8 text \(1 binary"),
    (lambda d: (d / "x.py").write_text(""), "the corpus is empty"),
])
def test_bad_folders(tmp_path, setup, message):
    folder = tmp_path / "corpus"
    folder.mkdir()
    setup(folder)
    with pytest.raises(DataError, match=message):
        open_input(folder, tmp_path, glob="*.py")


def test_a_binary_file_and_a_pattern_on_a_file_are_refused(tree, tmp_path):
    with pytest.raises(DataError, match="blob.py: looks binary"):
        open_input(tree / "pkg" / "blob.py", tmp_path)
    with pytest.raises(UsageError, match="--glob / data.glob: selects files in a folder"):
        open_input(tree / "a.py", tmp_path, glob="*.py")
