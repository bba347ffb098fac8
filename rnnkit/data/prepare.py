"""`prepare`: fetch, clean, split into sentences, encode and store a corpus once, cached by its settings.

A prepared dataset is the folder `<root>/prepared/<name>-<settings hash>/` holding `vocab.json`,
`manifest.json` (source, sha256, settings, counts, cleaning report) and `tokens.safetensors` (per split:
`<split>.tokens`, the sentences' ids one after the other, and `<split>.offsets`, where each one starts).
`data.mode: stream` keeps the text whole instead, in `tokens.npy` (see `rnnkit.data.stream`).
`root` is the `root` argument, else `$RNNKIT_DATA`, else `./data`; downloads are cached in `<root>/cache/`.
The corpus is a file, a folder of text files or standard input (see `rnnkit.data.inputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from rnnkit.config import DataConfig
from rnnkit.data import stream as streams
from rnnkit.data.cleaning import CleaningReport, clean_text
from rnnkit.data.inputs import MAX_INVALID_FRACTION, STDIN, CorpusInput, open_input
from rnnkit.data.sources import (
    SOURCES,
    Source,
    check_fits_memory,
    check_readable,
    fetch,
    get_source,
    is_download,
    local_path,
)
from rnnkit.data.store import MANIFEST, write_folder
from rnnkit.data.vocab import EOS, Vocab
from rnnkit.errors import DataError, UsageError
from rnnkit.io.atomic import atomic_folder, atomic_write_json, atomic_write_text

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A sentence ends at a run of . ! ? (kept, with closing quotes/brackets after it) or at a line break:
# the corpora at hand put one paragraph per line, and a header line such as "SPEECH 1" is no sentence start.
# Leading delimiters stay with the sentence they open ("...Thank you so much.").
SENTENCE = re.compile(r"[.!?]*[^.!?\n]*(?:[.!?]+[\"')\]]*|\n|$)")
TOKENS_FILES = {"sentences": "tokens.safetensors", streams.MODE: streams.TOKENS_FILE}


def data_root(root: str | Path | None = None) -> Path:
    """Where prepared datasets and downloads live: `root`, else $RNNKIT_DATA, else ./data."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("RNNKIT_DATA") or "data")


# ---------------------------------------------------------------- reading and splitting text

def read_corpus(path: Path, data: bytes | None = None) -> tuple[str, int | None]:
    """Decode a UTF-8 corpus; return the text and the byte offset of the first invalid byte (or None).

    Invalid bytes are decoded as lone surrogates (surrogateescape), which cleaning removes and counts as
    "invalid UTF-8 byte"; a file with many of them, or with NUL bytes, is refused as not UTF-8 text.
    """
    if data is None:
        check_readable(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if not data.strip():
        raise DataError(f"{path}: the corpus is empty")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: looks binary (NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        first = err.start
    text = data.decode("utf-8", "surrogateescape")
    invalid = sum(1 for c in text if "\udc80" <= c <= "\udcff") if len(data) < 1 << 26 else None
    if invalid is None or invalid > MAX_INVALID_FRACTION * len(data):
        raise DataError(f"{path}: not UTF-8 text (first invalid byte at offset {first}); convert it, e.g. "
                        f"iconv -f cp1252 -t utf-8 {path.name} > {path.stem}.utf8.txt")
    return text, first


@dataclass
class SentenceStats:
    """What sentence splitting kept, dropped and cut (counts of sentences unless said otherwise)."""

    raw: int = 0
    kept: int = 0
    dropped_short: int = 0
    dropped_short_chars: int = 0
    dropped_long: int = 0
    dropped_long_chars: int = 0
    split_long: int = 0
    whitespace_collapsed: int = 0  # characters: line breaks and runs of spaces between and inside sentences


def _cut(sentence: str, max_len: int) -> list[str]:
    """Pieces of at most max_len characters, cut at a space when one is in the second half of the piece."""
    pieces, pos, n = [], 0, len(sentence)
    while n - pos > max_len:  # index arithmetic, not slicing the rest: a 20 MB line stays linear
        cut = sentence.rfind(" ", pos + max_len // 2, pos + max_len + 1)
        if cut <= pos:
            pieces.append(sentence[pos:pos + max_len])
            pos += max_len
        else:
            pieces.append(sentence[pos:cut])
            pos = cut + 1
    pieces.append(sentence[pos:])
    return pieces


def split_sentences(text: str, min_len: int, max_len: int, too_long: str = "split",
                    where: str = "corpus") -> tuple[list[str], SentenceStats]:
    """Sentences of `text` (delimiters kept, whitespace collapsed), within min_len..max_len characters."""
    stats, out = SentenceStats(), []
    for match in SENTENCE.finditer(text):
        chunk = match.group()
        sentence = " ".join(chunk.split())
        stats.whitespace_collapsed += len(chunk) - len(sentence)
        if not sentence:
            continue
        stats.raw += 1
        pieces = [sentence]
        if len(sentence) > max_len:
            if too_long == "error":
                raise DataError(f"{where}: sentence {stats.raw} has {len(sentence):,} characters, more than "
                                f"data.max_len {max_len} (data.too_long: error); raise --max-len or use "
                                f"data.too_long: split")
            if too_long == "drop":
                stats.dropped_long += 1
                stats.dropped_long_chars += len(sentence)
                continue
            pieces = _cut(sentence, max_len)
            stats.split_long += 1
            stats.whitespace_collapsed += len(sentence) - sum(map(len, pieces))
        for piece in pieces:
            if len(piece) < min_len:
                stats.dropped_short += 1
                stats.dropped_short_chars += len(piece)
            else:
                out.append(piece)
    stats.kept = len(out)
    return out, stats


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Sentence indices per split (each sorted, so a split reads in corpus order); a pure function of seed.

    A non-zero fraction gets at least one sentence when there are three or more.
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)  # Python's shuffle is reproducible across versions for one seed

    def count(fraction: float) -> int:
        k = round(n * fraction)
        return 1 if fraction > 0 and k == 0 and n >= 3 else k

    n_val, n_test = count(val_fraction), count(test_fraction)
    if n - n_val - n_test < 1:
        raise DataError(f"only {n} sentence(s) after cleaning: nothing left for training; use a larger corpus "
                        f"or lower --min-len")
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test])}


# ---------------------------------------------------------------- the summary the CLI prints

@dataclass
class PrepareSummary:
    """What a prepare did (or found cached): read back from the manifest so both cases print alike."""

    name: str
    folder: Path
    reused: bool
    source: str
    sha256: str | None
    pinned_sha256: str | None
    cleaning: CleaningReport
    sentences: dict[str, int]
    stats: SentenceStats
    vocab_size: int
    sentence_chars: int = 0  # characters in the kept sentences (all splits, EOS not counted)
    invalid_utf8_offset: int | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # lines a custom preparer adds to the printed summary
    mode: str = "sentences"  # or "stream"
    characters: dict[str, int] = field(default_factory=dict)  # per split (stream: the contiguous splits)
    dtype: str = ""  # stream: the integer type of tokens.npy
    files: int = 1  # files read (a folder's matching UTF-8 files)
    skipped: dict[str, int] = field(default_factory=dict)  # files skipped, per reason
    skipped_names: list[str] = field(default_factory=list)
    invalid_utf8_file: str | None = None  # a folder: the file the first invalid byte is in

    @classmethod
    def from_manifest(cls, manifest: dict, folder: Path, reused: bool, seconds: float = 0.0) -> PrepareSummary:
        src, counts = manifest["source"], manifest["counts"]
        stream = manifest.get("mode") == streams.MODE
        return cls(name=manifest["name"], folder=folder, reused=reused, source=src["location"],
                   sha256=src.get("sha256"), pinned_sha256=src.get("pinned_sha256"),
                   cleaning=CleaningReport.from_dict(manifest["cleaning"]),
                   sentences={} if stream else counts["sentences"],
                   stats=SentenceStats() if stream else SentenceStats(**counts["splitting"]),
                   vocab_size=counts["vocab_size"], sentence_chars=sum(counts.get("characters", {}).values()),
                   invalid_utf8_offset=src.get("invalid_utf8_offset"), seconds=seconds,
                   mode=manifest.get("mode", "sentences"), characters=counts.get("characters", {}),
                   dtype=counts.get("dtype", ""), files=src.get("files", 1), skipped=src.get("skipped", {}),
                   skipped_names=src.get("skipped_names", []), invalid_utf8_file=src.get("invalid_utf8_file"))

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) lines for a human: the CLI prints them as a table."""
        c, s = self.cleaning, self.stats
        rows = [("dataset", f"{self.folder}" + (" (reused from cache)" if self.reused else " (built)")),
                ("source", self.source)]
        if self.sha256:
            pin = "" if self.pinned_sha256 is None else (
                " (matches the pinned checksum)" if self.sha256 == self.pinned_sha256
                else " (differs from the pinned download; used as given)")
            rows.append(("sha256", self.sha256 + pin))
        if self.files > 1 or self.skipped:
            rows.append(("files", self.files_line()))
        stream = self.mode == streams.MODE
        rows.append(("characters", f"{c.chars_in:,} read, {c.chars_out:,} after cleaning" + (
            "" if stream else f", {self.sentence_chars:,} in sentences")))
        mapped = ", ".join(f"{kind} {n:,}" for kind, n in c.mapped.items()) or "none"
        removed = ", ".join(f"{kind} {n:,}" for kind, n in c.removed.items()) or "none"
        rows.append(("mapped", f"{c.total_mapped:,}: {mapped}"))
        rows.append(("removed", f"{c.total_removed:,}: {removed}"))
        if c.removed_chars:
            rows.append(("removed characters", ", ".join(f"{k} x{n:,}" for k, n in list(c.removed_chars.items())[:8])))
        if self.invalid_utf8_offset is not None:
            where = f" of {self.invalid_utf8_file}" if self.invalid_utf8_file else ""
            rows.append(("invalid UTF-8", f"first bad byte at offset {self.invalid_utf8_offset:,}{where} (bytes "
                                          f"removed, counted above)"))
        if stream:
            return rows + self.stream_rows()
        rows.append(("vocabulary", f"{self.vocab_size} ids (PAD=0, EOS=1, {self.vocab_size - 2} characters)"))
        rows.append(("sentences", f"{s.raw:,} found, {s.kept:,} kept: " + ", ".join(
            f"{split} {n:,}" for split, n in self.sentences.items())))
        rows.append(("dropped", f"{s.dropped_short:,} shorter than min_len ({s.dropped_short_chars:,} chars), "
                                f"{s.dropped_long:,} longer than max_len ({s.dropped_long_chars:,} chars); "
                                f"{s.split_long:,} long sentences cut into pieces"))
        rows.append(("whitespace", f"{s.whitespace_collapsed:,} line breaks/extra spaces collapsed"))
        for key, value in self.extra.items():
            rows.append((key, str(value)))
        return rows

    def files_line(self) -> str:
        skipped = sum(self.skipped.values())
        line = f"{self.files:,} read"
        if self.files > 1:
            line += " (an empty line between files)"
        if skipped:
            reasons = ", ".join(f"{n:,} {why}" for why, n in self.skipped.items())
            more = ", ..." if skipped > len(self.skipped_names) else ""
            line += f", {skipped:,} skipped ({reasons}: {', '.join(self.skipped_names)}{more})"
        return line

    def stream_rows(self) -> list[tuple[str, str]]:
        total = sum(self.characters.values())
        return [("vocabulary", f"{self.vocab_size} ids ({self.vocab_size - 2} characters; PAD=0 and EOS=1 "
                               f"reserved, never in a stream), stored as {self.dtype}"),
                ("stream", f"{total:,} characters, layout kept (line breaks, tabs, indentation): "
                           + ", ".join(f"{split} {n:,}" for split, n in self.characters.items())
                           + " (contiguous, in this order)")]


# ---------------------------------------------------------------- preparing

def settings_of(data_cfg: DataConfig, source_key: str, generated: bool) -> dict:
    """The settings that change the prepared folder. Sentences and windows share one (window only changes the
    batches); a stream keeps the whole text, so sentence settings and the split seed do not apply to it."""
    if data_cfg.mode == streams.MODE:
        return {"format_version": FORMAT_VERSION, "source": source_key, "mode": streams.MODE,
                "val_fraction": data_cfg.val_fraction, "test_fraction": data_cfg.test_fraction,
                "charset": data_cfg.charset, "lowercase": data_cfg.lowercase}
    settings = {"format_version": FORMAT_VERSION, "source": source_key, "min_len": data_cfg.min_len,
                "max_len": data_cfg.max_len, "too_long": data_cfg.too_long, "val_fraction": data_cfg.val_fraction,
                "test_fraction": data_cfg.test_fraction, "split_seed": data_cfg.split_seed}
    if generated:
        settings["num_samples"] = data_cfg.num_samples
    else:
        settings.update(charset=data_cfg.charset, lowercase=data_cfg.lowercase)
    return settings


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(folder: Path, manifest: dict) -> bool:
    tokens = TOKENS_FILES[manifest.get("mode", "sentences")]
    return (folder / "vocab.json").is_file() and (folder / tokens).is_file()


def _cached_manifest(folder: Path, digest: str) -> dict | None:
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("settings_hash") != digest or not _complete(folder, manifest):
        return None
    return manifest


def _write_folder(folder: Path, vocab: Vocab, sentences: list[str], splits: dict[str, list[int]],
                  manifest: dict) -> None:
    """Encode each split and write the dataset folder all or nothing (see `prepared.write_folder`)."""
    tensors = {}
    for split, indices in splits.items():
        chosen = [sentences[i] for i in indices]
        lengths = torch.tensor([len(s) for s in chosen], dtype=torch.long)
        tensors[f"{split}.tokens"] = torch.from_numpy(vocab.encode_array("".join(chosen))).to(torch.int32)
        tensors[f"{split}.offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    write_folder(folder, "tokens.safetensors", tensors, manifest, texts={"vocab.json": vocab.to_json()})


def open_corpus(source: Source | None, data_cfg: DataConfig, root: Path, in_memory: bool) -> CorpusInput:
    """The corpus to read: data.path (a file, folder, URL or "-" for standard input), else the source's own
    folder (pystdlib) or download (trump). in_memory: the text will be held whole (sentence modes), so a
    corpus too large for memory is refused before it is read."""
    spool = root / "cache" / "stdin"
    location = data_cfg.path
    if location is None and source is not None and source.folder is not None:
        corpus = open_input(source.folder(), spool, data_cfg.glob or source.glob, data_cfg.exclude or source.exclude)
    elif location == STDIN or (location is not None and not is_download(location) and local_path(location).is_dir()):
        corpus = open_input(location if location == STDIN else local_path(location), spool, data_cfg.glob,
                            data_cfg.exclude)
    else:
        path, _, shown = fetch(source, location, root / "cache", in_memory=in_memory)
        corpus = open_input(path, spool, data_cfg.glob, data_cfg.exclude)
        corpus.location = shown
    if in_memory:
        with contextlib.ExitStack() as stack:
            stack.callback(corpus.close)
            check_fits_memory(corpus.location, corpus.size)
            stack.pop_all()
    return corpus


def _source_entry(corpus: CorpusInput | None, location: str, source: Source | None) -> dict:
    """The manifest's "source": where the text came from, its checksum, the files read and skipped."""
    entry = {"location": location, "sha256": corpus.sha256 if corpus else None,
             "pinned_sha256": source.sha256 if source else None, "invalid_utf8_offset": None}
    if corpus is None:
        return entry
    first = corpus.first_invalid
    if first is not None:
        entry["invalid_utf8_offset"] = first[1]
        if corpus.kind == "folder":
            entry["invalid_utf8_file"] = first[0]
    entry.update(kind=corpus.kind, files=len(corpus.files), skipped=corpus.skipped,
                 skipped_names=corpus.skipped_names, bytes=corpus.size)
    return entry


def prepare_text_source(source: Source | None, data_cfg: DataConfig, name: str, root: Path,
                        force: bool) -> PrepareSummary:
    """The text pipeline: read or generate, clean, split, build the vocabulary, encode, write."""
    start = time.perf_counter()
    generated = source is not None and source.generate is not None
    stream = data_cfg.mode == streams.MODE
    if generated and data_cfg.path is not None:
        raise UsageError(f"{name} is a generated source; --from does not apply (pick another name for your file)")
    if generated and stream:
        raise UsageError(f"data.mode: stream reads a text corpus, and {name} generates separate sentences; use "
                         f"data.mode: sentences or windows")
    corpus = None if generated else open_corpus(source, data_cfg, root, in_memory=not stream)
    with contextlib.closing(corpus) if corpus is not None else contextlib.nullcontext():
        location = f"generated: {name}" if generated else corpus.location
        settings = settings_of(data_cfg, f"generated:{name}" if generated else f"sha256:{corpus.sha256}", generated)
        digest = settings_hash(settings)
        folder = root / "prepared" / f"{name}-{digest}"
        if not force:
            manifest = _cached_manifest(folder, digest)
            if manifest is not None:
                return _summary(manifest, folder, True, start)
        manifest = {"format_version": FORMAT_VERSION, "name": name, "settings_hash": digest, "settings": settings,
                    "source": _source_entry(corpus, location, source)}
        if stream:
            manifest = _prepare_stream(folder, corpus, data_cfg, manifest)
        else:
            manifest = _prepare_sentences(folder, source if generated else None, corpus, data_cfg, manifest)
    return _summary(manifest, folder, False, start)


def _prepare_stream(folder: Path, corpus: CorpusInput, data_cfg: DataConfig, manifest: dict) -> dict:
    """Write a stream folder (see `rnnkit.data.stream`) all or nothing; returns its manifest."""
    with atomic_folder(folder) as tmp:
        vocab, entries, report = streams.write_stream(tmp, corpus, data_cfg.charset, data_cfg.lowercase,
                                                      data_cfg.val_fraction, data_cfg.test_fraction)
        manifest = {**manifest, "mode": streams.MODE, **entries, "cleaning": report.to_dict(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(tmp / "vocab.json", vocab.to_json())
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def _prepare_sentences(folder: Path, generator: Source | None, corpus: CorpusInput | None, data_cfg: DataConfig,
                       manifest: dict) -> dict:
    """Sentences (generated, or split from the cleaned text), split at random, encoded and written."""
    if generator is not None:
        sentences = generator.generate(data_cfg)
        chars = sum(map(len, sentences))
        report, stats = CleaningReport(chars_in=chars, chars_out=chars), SentenceStats(
            raw=len(sentences), kept=len(sentences))
    else:
        location = manifest["source"]["location"]
        text, report = clean_text(corpus.text(), data_cfg.charset, data_cfg.lowercase)
        sentences, stats = split_sentences(text, data_cfg.min_len, data_cfg.max_len, data_cfg.too_long,
                                           where=location)
        del text
        if not sentences:
            raise DataError(f"{location}: no sentence of {data_cfg.min_len}..{data_cfg.max_len} characters "
                            f"after cleaning ({stats.raw} found, {stats.dropped_short} too short)")
    splits = split_indices(len(sentences), data_cfg.val_fraction, data_cfg.test_fraction, data_cfg.split_seed)
    vocab = Vocab.from_text("".join(sentences))
    manifest = {
        **manifest,
        "counts": {"vocab_size": len(vocab), "sentences": {s: len(i) for s, i in splits.items()},
                   "characters": {s: sum(len(sentences[k]) for k in i) for s, i in splits.items()},
                   "splitting": dataclasses.asdict(stats)},
        "cleaning": report.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_folder(folder, vocab, sentences, splits, manifest)
    return manifest


def _summary(manifest: dict, folder: Path, reused: bool, start: float) -> PrepareSummary:
    return PrepareSummary.from_manifest(manifest, folder, reused, time.perf_counter() - start)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def prepare_with_summary(data_cfg: DataConfig, root: str | Path | None = None, name: str | None = None,
                         force: bool = False) -> PrepareSummary:
    """Prepare (or reuse) the dataset that `data_cfg` describes; `name` defaults to data_cfg.source.

    data.path "-" reads standard input (what `rnnkit prepare NAME --from -` does)."""
    name = name or data_cfg.source
    _check_name(name)
    source = get_source(name)
    if source is None and data_cfg.path is None:
        raise UsageError(f"unknown source {name!r}: registered sources are {', '.join(sorted(SOURCES))}; "
                         f"for a corpus of your own pass --from PATH_OR_URL (any name works)")
    preparer = source.preparer if source is not None and source.preparer is not None else prepare_text_source
    return preparer(source, data_cfg, name, data_root(root), force)


def prepare_corpus(data_cfg: DataConfig, root: str | Path | None = None, name: str | None = None,
                   force: bool = False) -> Path:
    """The folder of the prepared dataset for `data_cfg` (built if missing): what the trainer calls.

    data.path "-" finds the corpus prepared from standard input under this name instead of reading it."""
    if data_cfg.path == STDIN:
        return prepared_from_stdin(data_cfg, data_root(root), name or data_cfg.source)
    return prepare_with_summary(data_cfg, root, name, force).folder


def prepared_from_stdin(data_cfg: DataConfig, root: Path, name: str) -> Path:
    """The most recent folder `rnnkit prepare NAME --from -` wrote with the settings of `data_cfg`."""
    _check_name(name)
    wanted = {k: v for k, v in settings_of(data_cfg, "", False).items() if k != "source"}
    found = []
    for folder in (root / "prepared").glob(f"{name}-*"):
        manifest = _read_manifest(folder)
        if (manifest is not None and manifest.get("name") == name and manifest["source"].get("location") == STDIN
                and {k: v for k, v in manifest["settings"].items() if k != "source"} == wanted
                and _complete(folder, manifest)):
            found.append(folder)
    if not found:
        raise DataError(f"data.path: '-' means the corpus prepared from standard input as {name!r} with these data "
                        f"settings, and there is none under {root / 'prepared'}; prepare it first: ... | rnnkit "
                        f"prepare {name} --from - (with the same --mode and data settings)")
    return max(found, key=lambda f: (f / MANIFEST).stat().st_mtime)


# ---------------------------------------------------------------- loading

class SplitView:
    """One split as a compact token array plus offsets; item i is sentence i as a 1-D LongTensor."""

    def __init__(self, tokens: torch.Tensor, offsets: torch.Tensor):
        self.tokens = tokens  # (N,) int32: all sentences of the split, back to back, no EOS
        self.offsets = offsets  # (n + 1,) int64: sentence i is tokens[offsets[i]:offsets[i + 1]]
        self._bounds = offsets.tolist()

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.tokens[self._bounds[i]:self._bounds[i + 1]].long()  # (len_i,)

    def lengths(self) -> torch.Tensor:
        """(n,) sentence lengths in characters, EOS not counted."""
        return self.offsets[1:] - self.offsets[:-1]

    def stream(self) -> torch.Tensor:
        """(N + n,) long: every sentence followed by EOS, the character stream of windows mode."""
        n = len(self)
        out = torch.full((self.tokens.numel() + n,), EOS, dtype=torch.long)
        shift = torch.repeat_interleave(torch.arange(n), self.lengths())  # sentence index of each token
        out[torch.arange(self.tokens.numel()) + shift] = self.tokens.long()
        return out


@dataclass
class PreparedCorpus:
    """A prepared dataset folder loaded: vocabulary, manifest, and the three splits (SplitView of sentences, or
    StreamSplit of a stream corpus: `split(name).stream()` is then the split's contiguous 1-D token tensor)."""

    folder: Path
    vocab: Vocab
    manifest: dict
    splits: dict[str, SplitView | streams.StreamSplit]

    @property
    def mode(self) -> str:
        """"stream" for a corpus prepared with data.mode: stream, else "sentences" (sentences and windows)."""
        return self.manifest.get("mode", "sentences")

    def split(self, name: str) -> SplitView | streams.StreamSplit:
        if name not in self.splits:
            raise DataError(f"{self.folder}: no split {name!r} (splits: {', '.join(self.splits)})")
        return self.splits[name]


def load_prepared(folder: str | Path) -> PreparedCorpus:
    """Load a folder written by `prepare_corpus`; DataError naming the folder if it is not one."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{folder}: not a prepared dataset (no manifest.json); run rnnkit prepare NAME first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{manifest_path}: unreadable manifest ({err}); prepare again with --force") from None
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{folder}: dataset format {version!r} is newer than this rnnkit understands; upgrade")
    vocab = Vocab.load(folder / "vocab.json")
    if manifest.get("mode") == streams.MODE:
        splits = streams.load_stream_splits(folder, manifest, lambda why: DataError(
            f"{folder}/{streams.TOKENS_FILE}: unreadable ({why}); prepare again with --force"))
        return PreparedCorpus(folder, vocab, manifest, splits)
    try:
        tensors = load_file(str(folder / "tokens.safetensors"))
        splits = {s: SplitView(tensors[f"{s}.tokens"], tensors[f"{s}.offsets"]) for s in SPLITS}
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise DataError(f"{folder}/tokens.safetensors: unreadable ({err}); prepare again with --force") from None
    return PreparedCorpus(folder, vocab, manifest, splits)
