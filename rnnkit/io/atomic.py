"""The one atomic writer: files and folders appear whole or not at all, and the old version is never deleted
before the new one is in place.

Files: written to a temporary sibling, flushed, fsync'ed, renamed over the target (`os.replace` is atomic on
POSIX and on Windows), then the directory entry is fsync'ed. Folders (`atomic_folder`): filled in a temporary
sibling, fsync'ed, then swapped in with two renames (target -> `.NAME.old-PID`, temporary -> target) and the
old copy deleted last. A crash between the two renames leaves a complete `.NAME.old-*` copy, which
`recover_folder` (and readers such as `rnnkit.runs.checkpoint`) fall back to.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    with contextlib.suppress(OSError):  # some filesystems (and Windows) refuse to open or fsync folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """`with atomic_file(path) as handle:` write (in chunks, e.g. a download); on a clean exit the file replaces
    `path` whole, flushed and fsync'ed; an exception inside the block leaves `path` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a mix."""
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def old_copies(target: Path) -> list[Path]:
    """Complete `.NAME.old-*` copies of `target` left by a crash between two renames, newest last."""
    return sorted(target.parent.glob(f".{target.name}.old-*"), key=_mtime)


def recover_folder(target: Path) -> None:
    """Before writing `target` again: drop half-written temporary folders; promote an old copy back to the
    name when a crash left none, else delete stale old copies."""
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = old_copies(target)
    if not target.is_dir() and olds:
        os.replace(olds.pop(), target)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """`with atomic_folder(target) as tmp:` fill `tmp`; on a clean exit it replaces `target` whole.

    An exception inside the block leaves `target` as it was and removes `tmp`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); a run or dataset folder is not
    try:
        yield tmp
        for child in tmp.iterdir():  # files written without the atomic writer still reach the disk
            if child.is_file():
                _fsync_file(child)
        fsync_dir(tmp)
        swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(tmp: Path, target: Path) -> None:
    """Replace folder `target` by the complete folder `tmp`: two renames, the old copy deleted last."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old.exists() and not target.exists():
            os.replace(old, target)  # put the old one back rather than leave nothing
        raise
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _mtime(path: Path) -> float:
    """Modification time, 0 for a path that is gone (a concurrent save renames and deletes folders)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
