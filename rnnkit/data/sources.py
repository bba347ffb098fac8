"""The registry of named data sources, and fetching a corpus file: local path, file:// or http(s) download."""

from __future__ import annotations

import hashlib
import os
import sysconfig
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnkit.errors import DataError, DownloadError, UsageError
from rnnkit.io.atomic import atomic_file

# A corpus larger than this is refused before it is read (sentence modes hold the whole text in memory while
# it is cleaned and split; data.mode: stream streams it and has no limit but the disk); set
# RNNKIT_MAX_CORPUS_BYTES to change it. Downloads are limited to it in every mode.
DEFAULT_MAX_BYTES = 2 * 1024**3
# Preparing sentences holds a corpus several times over (raw and cleaned text, the sentence list, the encoded
# ids): about 21 bytes of memory per byte of a 50 MB English corpus, measured; a corpus that would need more
# than the memory available is refused up front rather than left to the OOM killer.
MEMORY_PER_BYTE = 24
DOWNLOAD_TIMEOUT_S = 60
CHUNK = 1 << 20


def max_corpus_bytes() -> int:
    raw = os.environ.get("RNNKIT_MAX_CORPUS_BYTES")
    if raw is None:
        return DEFAULT_MAX_BYTES
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"RNNKIT_MAX_CORPUS_BYTES: expected a number of bytes, got {raw!r}") from None


@dataclass(frozen=True)
class Source:
    """A named data source: a file to download (url + sha256 + filename) or a generator of sentences.

    `generate(data_cfg) -> list[str]` makes the sentences of a generated source (reber).
    `folder() -> Path` names a local folder read instead of a download (pystdlib), with the `glob` and
    `exclude` patterns used when the config gives none (see `rnnkit.data.inputs.open_input`).
    `preparer`, when set, replaces the whole text pipeline for this source: it receives the same
    arguments as `rnnkit.data.prepare.prepare_text_source` and returns a `PrepareSummary` (or any object
    with `name`, `folder`, `reused`, `seconds` and `rows()`, such as `rnnkit.data.store.DataSummary`).
    Sources that are not character-level text (metro forecasting, language identification) register one.
    """

    name: str
    description: str
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    generate: Callable | None = None
    preparer: Callable | None = None
    folder: Callable[[], Path] | None = None
    glob: str | None = None
    exclude: str | None = None


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Add a source to the registry (a module registers its sources when imported)."""
    SOURCES[source.name] = source
    return source


def _generate_reber(data_cfg) -> list[str]:
    from rnnkit.data.reber import generate_embedded_reber

    return generate_embedded_reber(data_cfg.num_samples, seed=data_cfg.split_seed,
                                   min_len=data_cfg.min_len, max_len=data_cfg.max_len)


register(Source(
    name="trump",
    description="Donald Trump's 2016 campaign speeches (github.com/ryanmcdermott/trump-speeches, ~900k characters)",
    url="https://raw.githubusercontent.com/ryanmcdermott/trump-speeches/master/speeches.txt",
    sha256="3b6362724e391ccb7e2adf790bc51e31e018fde8027fefa005630c76eecce6a2",
    filename="speeches.txt",
))
register(Source(
    name="pystdlib",
    description="the Python source of the standard library of the Python that runs rnnkit (*.py, site-packages "
                "and hidden folders left out)",
    folder=lambda: Path(sysconfig.get_paths()["stdlib"]),
    glob="*.py",
    exclude="site-packages,dist-packages",
))
register(Source(
    name="reber",
    description="embedded Reber grammar strings (Hochreiter & Schmidhuber 1997), generated with data.split_seed",
    generate=_generate_reber,
))
# Sources with their own preparer register from their module: metro and metro-synthetic in
# rnnkit/data/metro_source.py, langid in rnnkit/data/langid.py (imported by rnnkit/data/__init__.py).


def get_source(name: str) -> Source | None:
    return SOURCES.get(name)


def is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https", "file")


def is_download(location: str) -> bool:
    """An http(s) URL (a file:// URL or a path is local)."""
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def local_path(location: str) -> Path:
    """A path from a plain path or a file:// URL."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(location).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_readable(path: Path, limit: int | None = None, in_memory: bool = True) -> int:
    """The size of corpus file `path`, or a DataError saying why it cannot be used.

    in_memory=False (data.mode: stream reads the file in chunks): neither the size limit nor the memory
    estimate applies."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a plain-text corpus file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot read (permission denied)")
    if in_memory:
        check_fits_memory(path, size, limit)
    return size


def check_fits_memory(where: str | Path, size: int, limit: int | None = None) -> None:
    """DataError when a corpus of `size` bytes is over the limit or would not fit in memory to be prepared
    as sentences."""
    limit = max_corpus_bytes() if limit is None else limit
    if size > limit:
        raise DataError(f"{where}: {size:,} bytes is more than the {limit:,} allowed "
                        f"(set RNNKIT_MAX_CORPUS_BYTES to raise the limit, pass a smaller file, or use "
                        f"data.mode: stream, which reads it in chunks)")
    available = available_memory()
    if available is not None and size * MEMORY_PER_BYTE > available:
        raise DataError(f"{where}: {size:,} bytes would need about {_mb(size * MEMORY_PER_BYTE)} of memory to "
                        f"prepare as sentences and {_mb(available)} is available; use data.mode: stream (read "
                        f"in chunks), split the corpus or prepare it on a larger machine")


def available_memory() -> int | None:
    """Bytes this process may still allocate: Linux MemAvailable, capped by a cgroup limit; None if unknown."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            found += [int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = (int(Path(name).read_text().strip()) for name in (limit_file, usage_file))
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
        found.append(max(limit - usage, 0))
    return min(found) if found else None


def _mb(size: int) -> str:
    return f"{size / 1024**2:,.1f} MB" if size < 1024**3 else f"{size / 1024**3:,.1f} GB"


def download(url: str, dest: Path, sha256: str | None = None, limit: int | None = None) -> Path:
    """Fetch `url` into `dest` through a temporary file; verify `sha256`; rename into place atomically.

    On any failure nothing is left at `dest` (a previous good copy is kept) and DownloadError says what to do.
    """
    limit = max_corpus_bytes() if limit is None else limit
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with atomic_file(dest) as handle:  # an exception below leaves `dest` as it was
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    size += len(chunk)
                    if size > limit:
                        raise DownloadError(f"{url}: more than {limit:,} bytes; refused (set "
                                            f"RNNKIT_MAX_CORPUS_BYTES to raise the limit)")
                    digest.update(chunk)
                    handle.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise DownloadError(f"could not download {url} ({reason}); download it yourself and pass "
                                f"--from PATH") from None
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DownloadError(f"{url}: checksum mismatch (expected sha256 {sha256}, got {got}); nothing was "
                                f"cached. If the file changed upstream, download it yourself and pass --from PATH")
    return dest


def _download_path(source: Source, cache_dir: Path) -> Path:
    return cache_dir / source.name / (source.filename or Path(urllib.parse.urlsplit(source.url).path).name)


def _keep_as_download(path: Path, dest: Path, sha256: str) -> None:
    """Copy a user's own copy of a pinned download where the download would go: `prepare trump --from FILE`
    then lets every later command that names no file (a config's `source: trump`) find the corpus offline.
    The copy goes through `download` (a file:// URL): streamed, checksummed, renamed into place atomically."""
    if not dest.exists() and path.resolve() != dest.resolve():
        download(path.resolve().as_uri(), dest, sha256)


def fetch(source: Source | None, location: str | None, cache_dir: Path,
          in_memory: bool = True) -> tuple[Path, str, str]:
    """The local file of a corpus: (path, sha256, where it came from).

    `location` (a path, file:// or http(s) URL) wins over the source's own URL. A registered download is
    cached under `cache_dir/<name>/` and verified against its pinned sha256 each time it is used.
    in_memory: see `check_readable`.
    """
    if location is not None:
        if urllib.parse.urlsplit(location).scheme in ("http", "https"):
            name = Path(urllib.parse.urlsplit(location).path).name or "corpus.txt"
            key = hashlib.sha256(location.encode()).hexdigest()[:12]
            dest = cache_dir / "url" / f"{key}-{name}"
            if not dest.exists():
                download(location, dest)
            return dest, sha256_file(dest), location
        path = local_path(location)
        check_readable(path, in_memory=in_memory)
        digest = sha256_file(path)
        if source is not None and source.url is not None and digest == source.sha256:
            _keep_as_download(path, _download_path(source, cache_dir), digest)
        return path, digest, str(path)
    if source is None or source.url is None:
        raise UsageError("no corpus file: pass --from PATH_OR_URL")
    dest = _download_path(source, cache_dir)
    if dest.exists():
        got = sha256_file(dest)
        if source.sha256 is None or got == source.sha256:
            return dest, got, source.url
    download(source.url, dest, source.sha256)
    return dest, sha256_file(dest), source.url
