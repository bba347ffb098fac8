"""Build the compiled CPU kernels (rnn_cpu.cpp) on first use, cache them, and load them; or say why not.

The library is built once per (source, flags, torch version, CPU) into a folder of the cache,
`$RNNKIT_EXTENSION_DIR` or `~/.cache/rnnkit/extensions` (`$XDG_CACHE_HOME` respected), with
`torch.utils.cpp_extension` (a C++ compiler and ninja; about 30 s on 2 cores). Later processes load the
cached library directly (milliseconds). `-march=native` is safe because the folder's name includes a hash of
this CPU's model and flags: another machine sharing the cache builds its own.

When the build or the load fails (no compiler, no ninja, no MKL in this torch, a read-only cache, ...) the
layers take the Python fused path (fused.py) and one line says so on the `rnnkit` logger, once per process.
`RNNKIT_NO_EXTENSION=1` skips the extension without a word; `disabled()` does the same for a block.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import threading
import time
import warnings
from pathlib import Path

import torch

NAME = "rnnkit_cpu"
SOURCE = Path(__file__).with_name("rnn_cpu.cpp")
# -O3 and -march=native vectorise the gate loops (AVX2/AVX-512 where the CPU has them); no -ffast-math, so
# NaN and inf behave as in torch (a diverging loss is still caught as non-finite).
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
LDFLAGS = ["-fopenmp"]
ENV_OFF, ENV_DIR = "RNNKIT_NO_EXTENSION", "RNNKIT_EXTENSION_DIR"
STALE_LOCK_SECONDS = 600  # a build holds torch's lock file for a minute or so; one older was interrupted

log = logging.getLogger("rnnkit")
_lock = threading.Lock()
_state: dict = {"tried": False, "loaded": False, "reason": None, "build_seconds": None, "path": None}
_off = threading.local()


def _cpu_key() -> str:
    """This CPU's model and instruction-set flags (what -march=native compiles for)."""
    text = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                text += line
                if line.startswith(("flags", "Features")):
                    break
    return text


def _digest(*parts: bytes) -> str:
    key = hashlib.sha256()
    for part in parts:
        key.update(part)
    return key.hexdigest()[:10]


def _family() -> str:
    """The folder name's prefix: this torch and this CPU (builds for others may share the cache)."""
    return f"{NAME}-torch{torch.__version__.replace('+', '_')}-cpu{_digest(_cpu_key().encode())}"


def cache_folder() -> Path:
    """Where the build of this source and these flags, for this torch and this CPU, lives."""
    root = os.environ.get(ENV_DIR)
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnkit" / "extensions"
    return base / f"{_family()}-{_digest(SOURCE.read_bytes(), ' '.join(CFLAGS + LDFLAGS).encode())}"


def _remove_older_builds(folder: Path) -> None:
    """Builds of earlier sources for the same torch and CPU are dead weight once this one exists."""
    for other in folder.parent.glob(_family() + "-*"):
        if other != folder and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


def _build_and_load() -> tuple[float | None, Path]:
    """Load the cached library, building it first when it is missing. Returns (build seconds or None, path)."""
    folder = cache_folder()
    library, lock = folder / f"{NAME}.so", folder / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)  # left by a build that was killed: torch would wait for it forever
    if library.exists() and not lock.exists():  # "lock": another process is building it
        torch.ops.load_library(str(library))
        return None, library
    if not torch.backends.mkl.is_available():
        raise RuntimeError("this torch has no MKL (the kernels use its packed GEMM)")
    from torch.utils import cpp_extension

    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # torch's own notes (an unexpected compiler, ...) would add lines to the one this module logs on failure.
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpp_extension.load(name=NAME, sources=[str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
                               build_directory=str(folder), is_python_module=False, verbose=False)
    finally:
        torch_log.setLevel(level)
    _remove_older_builds(folder)
    return time.perf_counter() - start, library


def _one_line(error: Exception) -> str:
    """The line of a failure worth showing: past ninja's and the compiler's command lines, the first that
    says error or not found (`/bin/sh: 1: c++: not found`, `rnn_cpu.cpp:12:3: error: ...`)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines[1:] if not line.startswith(("[", "FAILED:", "ninja:")) and " -c " not in line
            and "-isystem" not in line]
    errors = [line for line in said if "error" in line.lower() or "not found" in line]
    return f"{type(error).__name__}: {(errors or said or lines or [''])[0][:200]}"


def load() -> bool:
    """Build (first use) or load the kernels once per process; True when `torch.ops.rnnkit_cpu` is usable."""
    if getattr(_off, "depth", 0) or os.environ.get(ENV_OFF, "") not in ("", "0"):
        return False
    if _state["tried"]:
        return _state["loaded"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["build_seconds"], _state["path"] = _build_and_load()
                _state["loaded"] = True
            except Exception as error:  # any failure (compiler, ninja, link, load) means: the Python path
                _state["reason"] = _one_line(error)
                log.warning("rnnkit: compiled CPU kernels unavailable (%s); using the Python fused path",
                            _state["reason"])
            _state["tried"] = True
    return _state["loaded"]


def status() -> dict:
    """What `load` did in this process: tried, loaded, reason (when not), build_seconds (when it built), path."""
    return dict(_state)


@contextlib.contextmanager
def disabled():
    """Within the block (this thread), the layers do not use the compiled kernels (benchmarks, tests)."""
    _off.depth = getattr(_off, "depth", 0) + 1
    try:
        yield
    finally:
        _off.depth -= 1
