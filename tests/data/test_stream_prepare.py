"""data.mode: stream: the text kept whole (layout included), contiguous splits, compact memory-mapped tokens;
folders and standard input through the real CLI; bad inputs refused with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import DataConfig
from rnnkit.data import inputs, stream
from rnnkit.data.cleaning import clean_text
from rnnkit.data.prepare import load_prepared, prepare_corpus, prepare_with_summary
from rnnkit.data.vocab import EOS, PAD

runner = CliRunner()
TEXT = ("\ufeffdef f(x):\r\n\tif x:\r\n\t\treturn 1\r\n    return 2\r\n\r\n\r\nclass A:\r\n    pass\r\n"
        "caf\u00e9 \u0096 done   here.\r\n") * 30


def stream_cfg(path, **extra) -> DataConfig:
    return DataConfig(source="code", path=str(path), mode="stream", val_fraction=0.1, test_fraction=0.1, **extra)


def test_the_stream_is_the_cleaned_text_whole_and_the_splits_follow_each_other(tmp_path):
    path = tmp_path / "code.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    summary = prepare_with_summary(stream_cfg(path), root=tmp_path)
    corpus = load_prepared(summary.folder)
    cleaned, _ = clean_text(TEXT, keep_layout=True)
    assert "\t\treturn 1\n    return 2\n\n\nclass" in cleaned  # tabs, indentation and blank lines kept
    assert corpus.mode == "stream" and corpus.manifest["mode"] == "stream"
    parts = [corpus.split(name).stream() for name in ("train", "val", "test")]
    assert all(p.dtype == torch.uint8 and p.dim() == 1 for p in parts)
    assert "".join(corpus.vocab.decode(p.long(), stop_at_eos=False) for p in parts) == cleaned
    assert [len(p) for p in parts] == [len(cleaned) - 2 * round(0.1 * len(cleaned)), *[round(0.1 * len(cleaned))] * 2]
    everything = torch.cat(parts)
    assert not ((everything == EOS) | (everything == PAD)).any()
    assert summary.cleaning.mapped["CRLF/CR line end"] == TEXT.count("\r\n")
    assert summary.cleaning.mapped["cp1252 mojibake (C1 control)"] == 30  # repaired and counted, as for sentences
    rows = dict(summary.rows())
    assert "stored as uint8" in rows["vocabulary"] and "contiguous" in rows["stream"]
    again = prepare_with_summary(stream_cfg(path), root=tmp_path)
    assert again.reused and again.folder == summary.folder


def test_reading_in_small_chunks_gives_the_same_tokens(tmp_path, monkeypatch):
    path = tmp_path / "code.txt"
    path.write_bytes(TEXT.encode("utf-8") + b"bad \xff byte\n")
    whole = load_prepared(prepare_corpus(stream_cfg(path), root=tmp_path / "a"))
    monkeypatch.setattr(inputs, "CHUNK_BYTES", 5)
    monkeypatch.setattr(stream, "CHUNK_BYTES", 3)
    pieces = load_prepared(prepare_corpus(stream_cfg(path), root=tmp_path / "b"))
    for name in ("train", "val", "test"):
        assert torch.equal(whole.split(name).stream(), pieces.split(name).stream())
    assert whole.manifest["cleaning"] == pieces.manifest["cleaning"]
    assert np.load(pieces.folder / "tokens.npy", mmap_mode="r").dtype == np.uint8


def test_a_folder_through_the_cli_then_standard_input(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.py").write_text("def a():\n    return 1\n")
    (src / "pkg" / "b.py").write_text("def b():\n\treturn 2\n")
    (src / "pkg" / "c.py").write_bytes(b"\x00binary")
    data = tmp_path / "data"
    result = runner.invoke(app, ["prepare", "mycode", "--from", str(src), "--glob", "*.py", "--mode", "stream",
                                 "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "2 read (an empty line between files), 1 skipped (1 binary (NUL bytes): pkg/c.py)" in shown
    assert "layout kept" in shown
    text = "def a():\n    return 1\n\ndef b():\n\treturn 2\n"
    piped = runner.invoke(app, ["prepare", "piped", "--from", "-", "--mode", "stream", "--data-dir", str(data)],
                          input=text)
    assert piped.exit_code == 0, piped.output
    assert not list((data / "cache" / "stdin").iterdir())  # the spooled copy is gone
    # A config with data.path "-" finds what was prepared from standard input under that name.
    folder = prepare_corpus(DataConfig(source="piped", path="-", mode="stream"), root=data)
    corpus = load_prepared(folder)
    assert corpus.vocab.decode(torch.cat([corpus.split(s).stream() for s in ("train", "val", "test")]).long(),
                               stop_at_eos=False) == text


@pytest.mark.parametrize(("make", "extra", "message"), [
    (lambda d: (d / "bin.dat").write_bytes(b"abc\x00def") and d / "bin.dat", [], "looks binary (NUL byte at offset 3)"),
    (lambda d: (d / "empty").mkdir() or d / "empty", [], "the folder holds no files"),
    (lambda d: ((d / "f").mkdir(), (d / "f" / "x.txt").write_text("hi\n")) and d / "f", ["--glob", "*.py"],
     "no file name matches '*.py'"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, make, extra, message):
    where = make(tmp_path)
    data = tmp_path / "data"
    result = runner.invoke(app, ["prepare", "bad", "--from", str(where), "--mode", "stream", "--data-dir", str(data),
                                 *extra])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in " ".join(result.output.split()), result.output
    assert not (data / "prepared").exists()


def test_standard_input_named_by_a_config_must_have_been_prepared(tmp_path):
    with pytest.raises(Exception, match="prepare it first: ... | rnnkit prepare novel --from -"):
        prepare_corpus(DataConfig(source="novel", path="-", mode="stream"), root=tmp_path)
