"""Opening a user's file for reading, with the one-line errors every command gives for a missing, folder or
unreadable path."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from rnnkit.errors import RnnkitError


def open_binary(path: str | Path, kind: str, error: type[RnnkitError], expected: str | None = None) -> BinaryIO:
    """`open(path, "rb")`, or `error` naming the path and the `kind` of file wanted (e.g. "config file"):
    "PATH: no such config file", "PATH: is a folder, expected a config file" (or `expected`), "PATH: cannot
    read (reason)"."""
    try:
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)
    except FileNotFoundError:
        raise error(f"{path}: no such {kind}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected {expected or 'a ' + kind}") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
