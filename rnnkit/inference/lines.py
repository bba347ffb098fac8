"""Lines of text to predict on, in small batches as they arrive: from arguments, a file or standard input.

A regular file is read `batch_size` lines at a time. Standard input (a pipe, a terminal) or any other stream
is read by a thread into a bounded queue, and a batch is whatever lines have arrived (at least one, at most
`batch_size`): a program that writes one line and waits for its answer gets it, a terminal gets one answer
per line typed, and a fast pipe fills whole batches. Memory holds a few batches, whatever the input's length.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from rnnkit.errors import DataError, UsageError
from rnnkit.io.reading import open_binary

STDIN = "-"
BATCH = 256  # lines per batch at most (a fast pipe or a file)
READ_BYTES = 1 << 16
QUEUED_READS = 8  # reads the thread may be ahead of the model: memory stays at a few READ_BYTES


def decode_line(raw: bytes) -> str:
    """One line's bytes -> text: the line end (LF or CRLF) removed, a byte that is not UTF-8 kept as a lone
    surrogate (U+DC80..U+DCFF), which no vocabulary holds, so the line is reported rather than guessed."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "surrogateescape")


def line_batches(source: Iterable[str] | str | Path | BinaryIO, batch_size: int = BATCH) -> Iterator[list[str]]:
    """Batches of lines of `source`: a list of texts (each one input), a file path, "-" (standard input) or an
    open binary stream; lines of a stream come as they arrive (see the module's docstring)."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if isinstance(source, (str, Path)) and str(source) == STDIN:
        import sys

        source = sys.stdin.buffer
    if isinstance(source, (str, Path)):
        yield from _file_batches(Path(source), batch_size)
    elif hasattr(source, "read"):
        yield from _stream_batches(source, batch_size)
    else:
        texts = list(source) if not isinstance(source, list) else source
        for start in range(0, len(texts), batch_size):
            yield texts[start:start + batch_size]


def _file_batches(path: Path, batch_size: int) -> Iterator[list[str]]:
    handle = open_binary(path, "file", DataError, expected="a text file with one input per line")
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # a named pipe, /dev/stdin: lines as they come
            yield from _stream_batches(handle, batch_size)
            return
        batch = []
        for raw in handle:
            batch.append(decode_line(raw))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _stream_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[str]]:
    """Lines of a stream that may pause (a pipe, a terminal), batched by what has arrived."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (tests): everything has arrived
        yield from _all_arrived(stream, batch_size)
        return
    reads: queue.Queue = queue.Queue(maxsize=QUEUED_READS)
    # A daemon thread: when the output is closed (`| head`) the command ends while the thread waits for input.
    # It reads with os.read, outside the stream object, so no lock of sys.stdin is held at interpreter exit.
    threading.Thread(target=_read_lines, args=(fd, reads), daemon=True, name="rnnkit-predict-input").start()
    pending: deque[bytes] = deque()
    ended = False
    while not ended or pending:
        if not pending and not ended:
            ended = _take(reads.get(), pending)  # wait for the first line of the next batch
        while not ended and len(pending) < batch_size:  # then take what else has arrived, without waiting
            try:
                ended = _take(reads.get_nowait(), pending)
            except queue.Empty:
                break
        if pending:
            yield [decode_line(pending.popleft()) for _ in range(min(batch_size, len(pending)))]


def _take(item, pending: deque) -> bool:
    """Add a read's lines to `pending`; True at the end of the input."""
    if item is None:
        return True
    if isinstance(item, OSError):
        raise DataError(f"standard input: cannot read ({item.strerror})")
    pending.extend(item)
    return False


def _read_lines(fd: int, reads: queue.Queue) -> None:
    """The reading thread: lists of complete lines (bytes) into `reads`, then None at the end of the input."""
    held = bytearray()
    try:
        while chunk := os.read(fd, READ_BYTES):
            held.extend(chunk)
            cut = held.rfind(b"\n") + 1
            if cut:
                reads.put(bytes(held[:cut - 1]).split(b"\n"))  # blocks while the model is behind
                del held[:cut]
        if held:
            reads.put([bytes(held)])
    except OSError as err:
        reads.put(err)
    reads.put(None)


def _all_arrived(stream: BinaryIO, batch_size: int) -> Iterator[list[str]]:
    batch = []
    for raw in iter(stream.readline, b""):
        batch.append(decode_line(raw))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
