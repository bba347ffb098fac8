"""The run lock: one `rnnkit train` per run folder, on POSIX and on Windows.

Only training takes it; reading a run (`eval`, `generate`, `rnnkit.load`) never does. The lock is an OS
lock on `run.lock` (flock on POSIX, msvcrt.locking on Windows), so the kernel drops it when the process
dies and a crashed run never leaves its folder locked. The file holds the holder's PID for the message.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rnnkit.errors import TrainingError

LOCK_FILE = "run.lock"


def _try_lock(handle) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def holder(run_dir: str | Path) -> int | None:
    """PID of the `rnnkit train` holding the folder's lock now, else None. Reads only: the lock file is opened
    read-only and a shared lock is tried and released at once (never created, never written)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        handle = open(path)  # noqa: SIM115 (closed below)
    except OSError:
        return None
    with handle:
        text = handle.read().strip()
        try:
            import fcntl
        except ImportError:  # Windows: msvcrt cannot test a read-only handle; the holder empties the file on exit
            return int(text) if text.isdigit() else None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


class RunLock:
    """An exclusive lock on a run folder; see the module docstring.

    A session that created the folder and failed before writing anything into it removes the folder again.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.handle = None
        self.created: Path | None = None  # the outermost folder this lock created (removed again if unused)

    def acquire(self) -> RunLock:
        folder = self.path.parent
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for _ in range(10):  # a holder that removes its unused folder races with us: try again
            try:
                folder.mkdir(parents=True, exist_ok=True)
                handle = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise TrainingError(f"{folder}: cannot create the run folder ({err.strerror}); choose another "
                                    f"run.dir or --run-dir") from None
            if not _try_lock(handle):
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise TrainingError(f"{folder}: in use by another rnnkit train (pid {holder}); wait for it "
                                    f"to finish or choose another run.name")
            if self._still_linked(handle):
                break
            handle.close()  # we locked a run.lock its previous holder had just removed
        else:
            raise TrainingError(f"{folder}: could not lock {LOCK_FILE}; is another rnnkit train starting there?")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        self.created = missing[-1] if missing else None
        return self

    def _still_linked(self, handle) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            self.handle.seek(0)
            self.handle.truncate()
            if self.created is not None and [p.name for p in self.path.parent.iterdir()] == [LOCK_FILE]:
                self._remove_unused_folders()  # still holding the lock: nobody else is using the folder
            _unlock(self.handle)
        self.handle.close()
        self.handle = None

    def _remove_unused_folders(self) -> None:
        self.path.unlink()
        folder = self.path.parent
        while True:
            folder.rmdir()  # an OSError (not empty) stops here, leaving the outer folders
            if folder == self.created:
                return
            folder = folder.parent

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
