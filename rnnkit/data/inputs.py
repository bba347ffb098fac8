"""A corpus as `prepare` reads it: one text file, every matching file under a folder, or standard input.

`open_input` lists and checks the files once (sha256, binary or not UTF-8, counted) without holding them in
memory; `CorpusInput.chunks()` then yields the decoded text piece by piece, so a corpus larger than memory
streams through cleaning. A folder is read in sorted order of the files' paths, hidden files and folders
left out; each file's text ends with a line break (one is added where missing) and an empty line separates
one file from the next (FILE_SEPARATOR). A single file or standard input is read exactly as it is.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.errors import DataError, UsageError
from rnnkit.io.reading import open_binary

CHUNK_BYTES = 4 << 20  # read and decode this much at a time: ~0.2 s of cleaning, some 30 times this in memory
# More than this fraction of undecodable bytes means the file is not UTF-8 text at all.
MAX_INVALID_FRACTION = 0.01
FILE_SEPARATOR = "\n"  # the empty line between two files (each file already ends with a line break)
STDIN = "-"
BINARY, NOT_UTF8 = "binary (NUL bytes)", "not UTF-8 text"


@dataclass
class InputFile:
    """One file of a corpus, checked: its size, checksum and invalid UTF-8 bytes (repaired by cleaning)."""

    path: Path
    name: str  # as the summary shows it: the path relative to the folder, or the path given
    size: int
    sha256: str
    invalid_bytes: int = 0
    first_invalid: int | None = None  # byte offset of the first invalid byte


@dataclass
class CorpusInput:
    """The checked files of a corpus and how to read them; `close()` removes a spooled standard input."""

    location: str  # what the manifest and summary show: a path, a folder with its pattern, or "-"
    kind: str  # "file", "folder" or "stdin"
    files: list[InputFile]
    sha256: str  # of the file; of the names and checksums of a folder's files
    skipped: dict[str, int] = field(default_factory=dict)  # why -> how many files (folders only)
    skipped_names: list[str] = field(default_factory=list)  # the first few skipped files
    spool: Path | None = None  # the temporary copy of standard input

    @property
    def size(self) -> int:
        """Bytes read (the files kept)."""
        return sum(f.size for f in self.files)

    @property
    def first_invalid(self) -> tuple[str, int] | None:
        """(file name, byte offset) of the first invalid UTF-8 byte, or None."""
        for f in self.files:
            if f.first_invalid is not None:
                return f.name, f.first_invalid
        return None

    def chunks(self) -> Iterator[str]:
        """The corpus text in pieces of about CHUNK_BYTES (invalid bytes as lone surrogates, which cleaning
        removes and counts), with the separator between a folder's files."""
        for index, item in enumerate(self.files):
            last = ""
            for text in _decoded(item.path):
                last = text[-1:] or last
                yield text
            if self.kind == "folder" and index + 1 < len(self.files):
                yield ("" if last in ("", "\n") else "\n") + FILE_SEPARATOR

    def text(self) -> str:
        """The whole corpus as one string (sentence modes, which hold the text in memory anyway)."""
        return "".join(self.chunks())

    def close(self) -> None:
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)

    def __enter__(self) -> CorpusInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decoded(path: Path) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            yield decoder.decode(block)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def open_input(location: str | Path, spool_dir: Path, glob: str | None = None,
               exclude: str | None = None) -> CorpusInput:
    """Check a corpus location: a file, a folder (files whose name matches `glob`, none matching one of the
    comma-separated `exclude` patterns) or "-" (standard input, copied to `spool_dir` while it is hashed).

    A single file that is binary or not UTF-8, an empty corpus, an empty folder, a pattern that matches no
    file, a folder without one UTF-8 text file: DataError, one line saying which.
    """
    if str(location) == STDIN:
        _folder_only(glob, exclude, "standard input")
        return _stdin(spool_dir)
    path = Path(location).expanduser()
    if path.is_dir():
        return _folder(path, glob or "*", _patterns(exclude))
    _folder_only(glob, exclude, str(path))
    item = _checked_file(path, path.name, strict=True)
    return CorpusInput(str(path), "file", [item], item.sha256)


def _folder_only(glob: str | None, exclude: str | None, what: str) -> None:
    if glob is not None or exclude is not None:
        key = "--glob / data.glob" if glob is not None else "--exclude / data.exclude"
        raise UsageError(f"{key}: selects files in a folder, and {what} is not a folder; leave it out")


def _patterns(exclude: str | None) -> list[str]:
    return [p.strip() for p in (exclude or "").split(",") if p.strip()]


def _stdin(spool_dir: Path) -> CorpusInput:
    """Copy standard input to a temporary file (it is read twice: checked, then prepared)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=spool_dir, prefix=".stdin-", suffix=".txt", delete=False)
    spool = Path(handle.name)
    try:
        with handle:
            source = sys.stdin.buffer
            for block in iter(lambda: source.read(CHUNK_BYTES), b""):
                handle.write(block)
        item = _checked_file(spool, "standard input", strict=True)
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return CorpusInput(STDIN, "stdin", [item], item.sha256, spool=spool)


def _listing(root: Path, glob: str, exclude: list[str]) -> tuple[list[Path], int]:
    """(files under `root` whose name matches glob, sorted by relative path; how many files there are at all)."""
    found, total = [], 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _matches(d, exclude)]
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") or not path.is_file():
                continue
            total += 1
            if fnmatch.fnmatchcase(name, glob) and not _matches(name, exclude):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), total


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _folder(root: Path, glob: str, exclude: list[str]) -> CorpusInput:
    paths, total = _listing(root, glob, exclude)
    shown = f"{root} ({glob}" + (f", without {','.join(exclude)})" if exclude else ")")
    if total == 0:
        raise DataError(f"{root}: the folder holds no files (hidden ones are not read)")
    if not paths:
        raise DataError(f"{root}: no file name matches {glob!r}" + (f" without {','.join(exclude)}" if exclude else "")
                        + f" among its {total:,} files (--glob / data.glob, --exclude / data.exclude)")
    kept, skipped, skipped_names = [], {}, []
    for path in paths:
        name = path.relative_to(root).as_posix()
        try:
            kept.append(_checked_file(path, name, strict=False))
        except _NotText as why:
            skipped[why.reason] = skipped.get(why.reason, 0) + 1
            skipped_names.append(name)
    if not kept:
        reasons = ", ".join(f"{n:,} {why}" for why, n in skipped.items())
        raise DataError(f"{root}: none of the {len(paths):,} files matching {glob!r} is UTF-8 text ({reasons})")
    if not any(f.size for f in kept):
        raise DataError(f"{root}: the corpus is empty (the {len(kept):,} files matching {glob!r} are empty)")
    digest = hashlib.sha256()
    for item in kept:
        digest.update(f"{item.name}\0{item.sha256}\n".encode("utf-8", "surrogateescape"))
    return CorpusInput(shown, "folder", kept, digest.hexdigest(), skipped, skipped_names[:5])


class _NotText(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _checked_file(path: Path, name: str, strict: bool) -> InputFile:
    """Read a file once: sha256, NUL bytes, invalid UTF-8 bytes. strict (a corpus of one file): DataError when
    it is not text; else _NotText, which a folder counts as a skipped file."""
    handle = open_binary(path, "file", DataError, expected="a plain-text corpus file")
    digest, size, invalid, first, blank = hashlib.sha256(), 0, 0, None, True
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    with handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            nul = block.find(b"\x00")
            if nul >= 0:
                if strict:
                    raise DataError(f"{path}: looks binary (NUL byte at offset {size + nul:,}); expected UTF-8 text")
                raise _NotText(BINARY)
            digest.update(block)
            start = size - len(decoder.getstate()[0])  # bytes an earlier block left undecoded come first
            bad, at = _invalid(decoder.decode(block))
            if bad and first is None:
                first = start + at
            invalid += bad
            blank = blank and not block.strip()
            size += len(block)
        start = size - len(decoder.getstate()[0])
        bad, at = _invalid(decoder.decode(b"", final=True))
        if bad and first is None:
            first = start + at
        invalid += bad
    if invalid > MAX_INVALID_FRACTION * size:
        if strict:
            raise DataError(f"{path}: not UTF-8 text (first invalid byte at offset {first:,}); convert it, e.g. "
                            f"iconv -f cp1252 -t utf-8 {path.name} > {path.stem}.utf8.txt")
        raise _NotText(NOT_UTF8)
    if blank and strict:
        raise DataError(f"{path}: the corpus is empty")
    return InputFile(path, name, size, digest.hexdigest(), invalid, first)


def _invalid(text: str) -> tuple[int, int]:
    """(how many undecodable bytes text holds as lone surrogates U+DC80..U+DCFF, the byte offset of the first in
    the bytes text was decoded from); a pure-ASCII block costs one check."""
    if text.isascii():
        return 0, 0
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    bad = (codes >= 0xDC80) & (codes <= 0xDCFF)
    count = int(bad.sum())
    if not count:
        return 0, 0
    at = int(np.argmax(bad))
    return count, len(text[:at].encode("utf-8", "surrogateescape"))
