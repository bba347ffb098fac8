"""The langid source: --class LABEL=PATH parsing, samples per line or per window, stratified splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.config import DataConfig
from rnnkit.data.langid import load_langid, parse_classes, samples_of
from rnnkit.data.prepare import prepare_with_summary
from rnnkit.errors import UsageError

LANGID = Path(__file__).resolve().parent / "langid"


def test_parse_classes():
    assert parse_classes("fr=a.txt, en = b.txt") == [("fr", Path("a.txt")), ("en", Path("b.txt"))]
    for bad, message in (("fr=a.txt,fr=b.txt", "given twice"), ("fr=a.txt", "at least two"), ("=a,en=b", "LABEL"),
                         (None, "--class")):
        with pytest.raises(UsageError, match=message):
            parse_classes(bad)


def test_samples_per_line_or_window():
    text = "Une ligne assez longue.\n\nCourt\n" + "x" * 25 + "\n"
    lines = samples_of(text, DataConfig(min_len=6, max_len=20))
    assert lines == ["Une ligne assez", "longue.", "x" * 20]
    windows = samples_of("ab cd\nef  gh ij", DataConfig(mode="windows", window=4))
    assert windows == ["ab c", "d ef", " gh "]


def test_every_split_keeps_both_languages(tmp_path):
    cfg = DataConfig(source="langid", classes=f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}", charset="unicode",
                     val_fraction=0.1, test_fraction=0.2)
    summary = prepare_with_summary(cfg, root=tmp_path)
    manifest, vocab, splits = load_langid(summary.folder)
    assert manifest["classes"] == ["fr", "en"] and vocab.contains("é")
    for split, (samples, labels) in splits.items():
        assert len(samples) == len(labels) and labels.bincount(minlength=2).tolist()[0] == labels.bincount(
            minlength=2).tolist()[1], split
    assert vocab.decode(splits["train"][0][0]) in (LANGID / "fr.txt").read_text(encoding="utf-8")
