"""`prepare`: fetch, clean, split into sentences, encode and store a corpus once, cached by its settings.

A prepared dataset is the folder `<root>/prepared/<name>-<settings hash>/` holding `vocab.json`,
`manifest.json` (source, sha256, settings, counts, cleaning report) and `tokens.safetensors` (per split:
`<split>.tokens`, the sentences' ids one after the other, and `<split>.offsets`, where each one starts).
`root` is the `root` argument, else `$RNNKIT_DATA`, else `./data`; downloads are cached in `<root>/cache/`.
"""

from __future__ import annotations

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
from rnnkit.data.cleaning import CleaningReport, clean_text
from rnnkit.data.sources import SOURCES, Source, check_readable, fetch, get_source
from rnnkit.data.store import write_folder
from rnnkit.data.vocab import EOS, Vocab
from rnnkit.errors import DataError, UsageError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A sentence ends at a run of . ! ? (kept, with closing quotes/brackets after it) or at a line break:
# the corpora at hand put one paragraph per line, and a header line such as "SPEECH 1" is no sentence start.
# Leading delimiters stay with the sentence they open ("...Thank you so much.").
SENTENCE = re.compile(r"[.!?]*[^.!?\n]*(?:[.!?]+[\"')\]]*|\n|$)")
# More than this fraction of undecodable bytes means the file is not UTF-8 text at all.
MAX_INVALID_FRACTION = 0.01


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

    @classmethod
    def from_manifest(cls, manifest: dict, folder: Path, reused: bool, seconds: float = 0.0) -> PrepareSummary:
        src = manifest["source"]
        return cls(name=manifest["name"], folder=folder, reused=reused, source=src["location"],
                   sha256=src.get("sha256"), pinned_sha256=src.get("pinned_sha256"),
                   cleaning=CleaningReport.from_dict(manifest["cleaning"]),
                   sentences=manifest["counts"]["sentences"], stats=SentenceStats(**manifest["counts"]["splitting"]),
                   vocab_size=manifest["counts"]["vocab_size"],
                   sentence_chars=sum(manifest["counts"].get("characters", {}).values()),
                   invalid_utf8_offset=src.get("invalid_utf8_offset"), seconds=seconds)

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
        rows.append(("characters", f"{c.chars_in:,} read, {c.chars_out:,} after cleaning, "
                                   f"{self.sentence_chars:,} in sentences"))
        mapped = ", ".join(f"{kind} {n:,}" for kind, n in c.mapped.items()) or "none"
        removed = ", ".join(f"{kind} {n:,}" for kind, n in c.removed.items()) or "none"
        rows.append(("mapped", f"{c.total_mapped:,}: {mapped}"))
        rows.append(("removed", f"{c.total_removed:,}: {removed}"))
        if c.removed_chars:
            rows.append(("removed characters", ", ".join(f"{k} x{n:,}" for k, n in list(c.removed_chars.items())[:8])))
        if self.invalid_utf8_offset is not None:
            rows.append(("invalid UTF-8", f"first bad byte at offset {self.invalid_utf8_offset:,} (bytes removed, "
                                          f"counted above)"))
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


# ---------------------------------------------------------------- preparing

def settings_of(data_cfg: DataConfig, source_key: str, generated: bool) -> dict:
    """The settings that change the prepared folder (not mode/window: those only change the batches)."""
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


def _cached_manifest(folder: Path, digest: str) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = (folder / "vocab.json").is_file() and (folder / "tokens.safetensors").is_file()
    return manifest if complete and manifest.get("settings_hash") == digest else None


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


def prepare_text_source(source: Source | None, data_cfg: DataConfig, name: str, root: Path,
                        force: bool) -> PrepareSummary:
    """The text pipeline: fetch or generate, clean, split, build the vocabulary, encode, write."""
    start = time.perf_counter()
    generated = source is not None and source.generate is not None
    if generated and data_cfg.path is not None:
        raise UsageError(f"{name} is a generated source; --from does not apply (pick another name for your file)")
    if generated:
        path, sha, location, source_key = None, None, f"generated: {name}", f"generated:{name}"
    else:
        path, sha, location = fetch(source, data_cfg.path, root / "cache")
        source_key = f"sha256:{sha}"
    settings = settings_of(data_cfg, source_key, generated)
    digest = settings_hash(settings)
    folder = root / "prepared" / f"{name}-{digest}"
    if not force:
        manifest = _cached_manifest(folder, digest)
        if manifest is not None:
            return _summary(manifest, folder, True, start)

    invalid_at = None
    if generated:
        sentences = source.generate(data_cfg)
        chars = sum(map(len, sentences))
        report, stats = CleaningReport(chars_in=chars, chars_out=chars), SentenceStats(
            raw=len(sentences), kept=len(sentences))
    else:
        text, invalid_at = read_corpus(path)
        text, report = clean_text(text, data_cfg.charset, data_cfg.lowercase)
        sentences, stats = split_sentences(text, data_cfg.min_len, data_cfg.max_len, data_cfg.too_long,
                                           where=location)
        del text
        if not sentences:
            raise DataError(f"{location}: no sentence of {data_cfg.min_len}..{data_cfg.max_len} characters "
                            f"after cleaning ({stats.raw} found, {stats.dropped_short} too short)")
    splits = split_indices(len(sentences), data_cfg.val_fraction, data_cfg.test_fraction, data_cfg.split_seed)
    vocab = Vocab.from_text("".join(sentences))
    manifest = {
        "format_version": FORMAT_VERSION, "name": name, "settings_hash": digest, "settings": settings,
        "source": {"location": location, "sha256": sha, "pinned_sha256": source.sha256 if source else None,
                   "invalid_utf8_offset": invalid_at},
        "counts": {"vocab_size": len(vocab), "sentences": {s: len(i) for s, i in splits.items()},
                   "characters": {s: sum(len(sentences[k]) for k in i) for s, i in splits.items()},
                   "splitting": dataclasses.asdict(stats)},
        "cleaning": report.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_folder(folder, vocab, sentences, splits, manifest)
    return _summary(manifest, folder, False, start)


def _summary(manifest: dict, folder: Path, reused: bool, start: float) -> PrepareSummary:
    return PrepareSummary.from_manifest(manifest, folder, reused, time.perf_counter() - start)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def prepare_with_summary(data_cfg: DataConfig, root: str | Path | None = None, name: str | None = None,
                         force: bool = False) -> PrepareSummary:
    """Prepare (or reuse) the dataset that `data_cfg` describes; `name` defaults to data_cfg.source."""
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
    """The folder of the prepared dataset for `data_cfg` (built if missing): what the trainer calls."""
    return prepare_with_summary(data_cfg, root, name, force).folder


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
    """A prepared dataset folder loaded: vocabulary, manifest, and the three splits."""

    folder: Path
    vocab: Vocab
    manifest: dict
    splits: dict[str, SplitView]

    def split(self, name: str) -> SplitView:
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
    try:
        tensors = load_file(str(folder / "tokens.safetensors"))
        splits = {s: SplitView(tensors[f"{s}.tokens"], tensors[f"{s}.offsets"]) for s in SPLITS}
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise DataError(f"{folder}/tokens.safetensors: unreadable ({err}); prepare again with --force") from None
    return PreparedCorpus(folder, vocab, manifest, splits)
