"""The `langid` source: labelled text files (`--class fr=PATH --class en=PATH`) cut into character samples.

`data.mode: sentences` takes one sample per line (cut at data.max_len, shorter than data.min_len dropped);
`data.mode: windows` slices each file's text into consecutive windows of `data.window` characters. Every
class is split into train/val/test on its own, so each split keeps the class proportions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from rnnkit.data.sources import Source, local_path, register, sha256_file
from rnnkit.data.store import DataSummary, cached_manifest, read_folder, write_folder
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError, UsageError

FORMAT_VERSION = 1
TENSORS = "samples.safetensors"
VOCAB = "vocab.json"
SPLITS = ("train", "val", "test")


def parse_classes(spec: str | None) -> list[tuple[str, Path]]:
    """`fr=a.txt,en=b.txt` -> [("fr", Path("a.txt")), ...]; UsageError for a malformed or duplicate label."""
    if not spec:
        raise UsageError("langid: give the labelled files with --class LABEL=PATH (at least two), "
                         "e.g. --class fr=fr.txt --class en=en.txt")
    pairs = []
    for item in spec.split(","):
        label, sep, path = item.partition("=")
        label, path = label.strip(), path.strip()
        if not sep or not label or not path:
            raise UsageError(f"--class {item.strip()!r}: expected LABEL=PATH, e.g. fr=fr.txt")
        if label in dict(pairs):
            raise UsageError(f"--class {label}: given twice")
        pairs.append((label, local_path(path)))
    if len(pairs) < 2:
        raise UsageError(f"langid: {len(pairs)} class given; a classifier needs at least two --class LABEL=PATH")
    return pairs


def samples_of(text: str, data_cfg) -> list[str]:
    """One class's cleaned text -> its samples (lines, or windows of data.window characters)."""
    from rnnkit.data.prepare import _cut

    if data_cfg.mode == "windows":
        flat = " ".join(text.split())
        w = data_cfg.window
        return [flat[i:i + w] for i in range(0, len(flat) - w + 1, w)]
    out = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if len(line) >= data_cfg.min_len:
            out.extend(p for p in _cut(line, data_cfg.max_len) if len(p) >= data_cfg.min_len)
    return out


def prepare_langid(source: Source | None, data_cfg, name: str, root: Path, force: bool) -> DataSummary:
    """Read, clean and split every class file; store ids, offsets and labels per split plus the vocabulary."""
    from rnnkit.data.prepare import settings_hash

    start = time.perf_counter()
    pairs = parse_classes(data_cfg.classes)
    for _, path in pairs:
        if not path.is_file():
            raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    settings = {"format_version": FORMAT_VERSION, "classes": [[c, sha256_file(p)] for c, p in pairs],
                "mode": data_cfg.mode, "window": data_cfg.window, "min_len": data_cfg.min_len,
                "max_len": data_cfg.max_len, "charset": data_cfg.charset, "lowercase": data_cfg.lowercase,
                "val_fraction": data_cfg.val_fraction, "test_fraction": data_cfg.test_fraction,
                "split_seed": data_cfg.split_seed}
    digest = settings_hash(settings)
    folder = root / "prepared" / f"{name}-{digest}"
    manifest = None if force else cached_manifest(folder, digest, TENSORS)
    reused = manifest is not None
    if manifest is None:
        manifest = _build(pairs, data_cfg, name, digest, settings, folder)
    rows = [("classes", ", ".join(f"{c} ({n:,})" for c, n in manifest["per_class"].items())),
            ("samples", ", ".join(f"{s} {n:,}" for s, n in manifest["counts"].items())),
            ("vocabulary", f"{manifest['vocab_size']} ids")]
    return DataSummary(name, folder, reused, time.perf_counter() - start, rows)


def _build(pairs, data_cfg, name, digest, settings, folder) -> dict:
    from rnnkit.data.cleaning import clean_text
    from rnnkit.data.prepare import read_corpus, split_indices

    per_split: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    per_class = {}
    for label, (cls, path) in enumerate(pairs):
        text, _ = read_corpus(path)
        text, _ = clean_text(text, data_cfg.charset, data_cfg.lowercase)
        samples = samples_of(text, data_cfg)
        if len(samples) < 3:
            raise DataError(f"{path}: only {len(samples)} sample(s) for class {cls!r} after cleaning; give more "
                            f"text or lower data.min_len / data.window")
        per_class[cls] = len(samples)
        for split, indices in split_indices(len(samples), data_cfg.val_fraction, data_cfg.test_fraction,
                                            data_cfg.split_seed + label).items():
            per_split[split].extend((samples[i], label) for i in indices)
    vocab = Vocab.from_text("".join(s for items in per_split.values() for s, _ in items))
    tensors = {}
    for split, items in per_split.items():
        lengths = torch.tensor([len(s) for s, _ in items], dtype=torch.long)
        tensors[f"{split}.tokens"] = torch.from_numpy(vocab.encode_array("".join(s for s, _ in items))).to(torch.int32)
        tensors[f"{split}.offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        tensors[f"{split}.labels"] = torch.tensor([label for _, label in items], dtype=torch.long)
    manifest = {"format_version": FORMAT_VERSION, "name": name, "settings_hash": digest, "settings": settings,
                "classes": [c for c, _ in pairs], "per_class": per_class, "vocab_size": len(vocab),
                "counts": {s: len(items) for s, items in per_split.items()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_folder(folder, TENSORS, tensors, manifest,
                 {VOCAB: json.dumps(vocab.to_dict(), ensure_ascii=False, indent=1) + "\n"})
    return manifest


def load_langid(folder: Path) -> tuple[dict, Vocab, dict[str, tuple[list[torch.Tensor], torch.Tensor]]]:
    """(manifest, vocabulary, {split: (samples as (len_i,) long tensors, labels (n,))})."""
    from rnnkit.data.prepare import SplitView

    folder = Path(folder)
    manifest, tensors = read_folder(folder, TENSORS)
    vocab = Vocab.load(folder / VOCAB)
    splits = {}
    for split in SPLITS:
        view = SplitView(tensors[f"{split}.tokens"], tensors[f"{split}.offsets"])
        splits[split] = ([view[i] for i in range(len(view))], tensors[f"{split}.labels"])
    return manifest, vocab, splits


register(Source(name="langid", description="language identification from labelled text files "
                                           "(--class fr=PATH --class en=PATH ...)", preparer=prepare_langid))
