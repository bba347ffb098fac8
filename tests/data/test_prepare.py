"""Preparing corpora: sentences, splits, the prepared folder, caching, downloads, bad input files."""

import dataclasses
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from rnnkit.config import DataConfig
from rnnkit.data import sources, store
from rnnkit.data.prepare import load_prepared, prepare_corpus, prepare_with_summary, split_indices, split_sentences
from rnnkit.data.reber import is_embedded_reber
from rnnkit.errors import DataError, DownloadError, UsageError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "trump_speeches"
CORPUS = "\ufeff" + "SPEECH 1\r\n...Thank you so much.  That\u2019s so nice!\r\nIs it? Yes \u2013 it is.\r\n" * 5


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"Sentence number {i} is here. " for i in range(200)), encoding="utf-8")
    return path


def all_sentences(folder):
    loaded = load_prepared(folder)
    return [loaded.vocab.decode(view[i]) for view in loaded.splits.values() for i in range(len(view))]


# ---------------------------------------------------------------- sentences and splits

def test_sentences_keep_delimiters_and_count_drops():
    text = "...Thank you so much. Hi! Is it? a. " + "x" * 25 + ".\nSPEECH 1\n"
    sentences, stats = split_sentences(text, min_len=3, max_len=22, too_long="split")
    assert sentences[:3] == ["...Thank you so much.", "Hi!", "Is it?"]
    assert sentences[-1] == "SPEECH 1"
    assert stats.dropped_short == 1 and stats.split_long == 1
    assert all(3 <= len(s) <= 22 for s in sentences)


def test_too_long_drop_and_error():
    text = "short one. " + "word " * 30 + "."
    kept, stats = split_sentences(text, 2, 50, "drop")
    assert kept == ["short one."] and stats.dropped_long == 1 and stats.dropped_long_chars > 50
    with pytest.raises(DataError, match="data.max_len 50"):
        split_sentences(text, 2, 50, "error")


def test_one_huge_line_is_cut_at_spaces():
    text = "lorem ipsum dolor " * 120_000  # 2 MB, one line, no delimiter
    sentences, stats = split_sentences(text, 2, 300, "split")
    assert max(map(len, sentences)) <= 300 and stats.split_long == 1
    assert sum(map(len, sentences)) + stats.whitespace_collapsed + stats.dropped_short_chars == len(text)
    assert all(not s.startswith(" ") and not s.endswith(" ") for s in sentences[:50])


def test_split_indices_partition_and_determinism():
    splits = split_indices(1000, 0.1, 0.05, seed=3)
    together = splits["train"] + splits["val"] + splits["test"]
    assert sorted(together) == list(range(1000))
    assert (len(splits["val"]), len(splits["test"])) == (100, 50)
    assert splits == split_indices(1000, 0.1, 0.05, seed=3)
    assert splits != split_indices(1000, 0.1, 0.05, seed=4)
    assert len(split_indices(3, 0.05, 0.05, 0)["val"]) == 1
    with pytest.raises(DataError, match="nothing left for training"):
        split_indices(2, 0.5, 0.5, 0)


# ---------------------------------------------------------------- the prepared folder and its cache

def test_prepare_writes_folder_and_round_trips(corpus, tmp_path):
    cfg = DataConfig(source="mine", path=str(corpus))
    folder = prepare_corpus(cfg, root=tmp_path / "data")
    assert folder.parent == tmp_path / "data" / "prepared" and folder.name.startswith("mine-")
    assert {p.name for p in folder.iterdir()} == {"vocab.json", "manifest.json", "tokens.safetensors"}
    loaded = load_prepared(folder)
    assert loaded.manifest["source"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert sorted(all_sentences(folder)) == sorted(f"Sentence number {i} is here." for i in range(200))
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left


def test_prepare_is_cached_and_settings_rebuild(corpus, tmp_path):
    cfg = DataConfig(source="mine", path=str(corpus))
    first = prepare_with_summary(cfg, root=tmp_path)
    stamp = (first.folder / "tokens.safetensors").stat().st_mtime_ns
    again = prepare_with_summary(dataclasses.replace(cfg, mode="windows", window=7), root=tmp_path)
    assert again.reused and again.folder == first.folder
    assert (first.folder / "tokens.safetensors").stat().st_mtime_ns == stamp
    changed = prepare_with_summary(dataclasses.replace(cfg, min_len=25), root=tmp_path)
    assert not changed.reused and changed.folder != first.folder
    forced = prepare_with_summary(cfg, root=tmp_path, force=True)
    assert not forced.reused and forced.folder == first.folder
    corpus.write_text("A different corpus. With two sentences.", encoding="utf-8")
    assert prepare_with_summary(cfg, root=tmp_path).folder not in (first.folder, changed.folder)


def test_interrupted_prepare_leaves_nothing(corpus, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(DataConfig(source="mine", path=str(corpus)), root=tmp_path)
    assert list((tmp_path / "prepared").iterdir()) == []


def test_rnnkit_data_environment_variable(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "elsewhere"))
    folder = prepare_corpus(DataConfig(source="mine", path=str(corpus)))
    assert folder.parent == tmp_path / "elsewhere" / "prepared"


def test_cleaning_counts_reach_the_summary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(CORPUS.encode("utf-8"))
    summary = prepare_with_summary(DataConfig(source="t", path=str(path)), root=tmp_path)
    assert summary.cleaning.removed == {"byte-order mark": 1}
    assert summary.cleaning.mapped["typographic punctuation"] == 10
    labels = dict(summary.rows())
    assert "vocabulary" in labels and "byte-order mark 1" in labels["removed"]


# ---------------------------------------------------------------- bad input files

def test_missing_empty_binary_and_too_large_files(tmp_path, monkeypatch):
    def run(path):
        return prepare_corpus(DataConfig(source="x", path=str(path)), root=tmp_path)

    with pytest.raises(DataError, match=r"nope\.txt: no such file"):
        run(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(DataError, match=r"empty\.txt: the corpus is empty"):
        run(tmp_path / "empty.txt")
    (tmp_path / "bin.dat").write_bytes(b"abc\x00def")
    with pytest.raises(DataError, match="NUL byte at offset 3"):
        run(tmp_path / "bin.dat")
    (tmp_path / "cp.txt").write_bytes("caf\u00e9 ".encode("cp1252") * 20)
    with pytest.raises(DataError, match="not UTF-8 text .first invalid byte at offset 3"):
        run(tmp_path / "cp.txt")
    monkeypatch.setenv("RNNKIT_MAX_CORPUS_BYTES", "10")
    (tmp_path / "big.txt").write_text("Too big for the limit.")
    with pytest.raises(DataError, match="big.txt: 22 bytes is more than the 10 allowed"):
        run(tmp_path / "big.txt")


def test_a_few_invalid_bytes_are_removed_and_reported(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Fine sentence here. " * 50 + b"Bad \xff byte. " + b"More text here. " * 50)
    summary = prepare_with_summary(DataConfig(source="bad", path=str(path)), root=tmp_path)
    assert summary.cleaning.removed == {"invalid UTF-8 byte": 1}
    assert summary.invalid_utf8_offset == 1004


def test_unknown_source_and_bad_name(tmp_path):
    with pytest.raises(UsageError, match="unknown source 'novel'.*--from"):
        prepare_corpus(DataConfig(source="novel"), root=tmp_path)
    with pytest.raises(UsageError, match="dataset name"):
        prepare_corpus(DataConfig(source="../x", path="f.txt"), root=tmp_path)


# ---------------------------------------------------------------- downloads

@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "speeches.txt").write_bytes(CORPUS.encode("utf-8"))
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def fake_trump(monkeypatch, url, sha):
    monkeypatch.setitem(sources.SOURCES, "trump", dataclasses.replace(sources.SOURCES["trump"], url=url, sha256=sha))


def test_download_with_good_checksum_is_cached(server, tmp_path, monkeypatch):
    base, requests = server
    fake_trump(monkeypatch, f"{base}/speeches.txt", hashlib.sha256(CORPUS.encode("utf-8")).hexdigest())
    first = prepare_with_summary(DataConfig(source="trump"), root=tmp_path / "data")
    cached = tmp_path / "data" / "cache" / "trump" / "speeches.txt"
    assert cached.read_bytes() == CORPUS.encode("utf-8") and len(requests) == 1
    assert first.sha256 == first.pinned_sha256
    again = prepare_with_summary(DataConfig(source="trump"), root=tmp_path / "data")
    assert again.reused and len(requests) == 1  # neither downloaded nor rebuilt


def test_download_checksum_mismatch_caches_nothing(server, tmp_path, monkeypatch):
    base, _ = server
    fake_trump(monkeypatch, f"{base}/speeches.txt", "0" * 64)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        prepare_corpus(DataConfig(source="trump"), root=tmp_path / "data")
    assert list((tmp_path / "data" / "cache" / "trump").iterdir()) == []
    assert not (tmp_path / "data" / "prepared").exists()


def test_offline_download_says_how_to_supply_the_file(server, tmp_path, monkeypatch):
    base, _ = server
    fake_trump(monkeypatch, f"{base}/missing.txt", "0" * 64)
    with pytest.raises(DownloadError, match=r"could not download .*missing\.txt.*pass --from PATH"):
        prepare_corpus(DataConfig(source="trump"), root=tmp_path)
    fake_trump(monkeypatch, "http://127.0.0.1:9/speeches.txt", "0" * 64)  # discard port: refused
    with pytest.raises(DownloadError, match="download it yourself and pass --from PATH"):
        prepare_corpus(DataConfig(source="trump"), root=tmp_path)


def test_own_copy_of_a_pinned_corpus_serves_later_commands_offline(tmp_path, monkeypatch):
    """`prepare trump --from FILE` and then a config saying only `source: trump`: no download attempted."""
    own = tmp_path / "mine.txt"
    own.write_text(CORPUS, encoding="utf-8")
    fake_trump(monkeypatch, "http://127.0.0.1:9/speeches.txt", hashlib.sha256(own.read_bytes()).hexdigest())
    first = prepare_with_summary(DataConfig(source="trump", path=str(own)), root=tmp_path / "data")
    later = prepare_with_summary(DataConfig(source="trump"), root=tmp_path / "data")  # port 9 would refuse
    assert later.reused and later.folder == first.folder
    # a copy that does not match the pinned checksum is used as given but never stands in for the download
    other = tmp_path / "other.txt"
    other.write_text(CORPUS + "More words here.\n", encoding="utf-8")
    prepare_with_summary(DataConfig(source="trump", path=str(other)), root=tmp_path / "data2")
    with pytest.raises(DownloadError, match="pass --from PATH"):
        prepare_corpus(DataConfig(source="trump"), root=tmp_path / "data2")


def test_from_url_and_file_url(server, tmp_path):
    base, requests = server
    by_http = prepare_with_summary(DataConfig(source="talks", path=f"{base}/speeches.txt"), root=tmp_path)
    local = tmp_path / "www" / "speeches.txt"
    by_file = prepare_with_summary(DataConfig(source="talks", path=local.as_uri()), root=tmp_path)
    assert by_file.reused and by_file.folder == by_http.folder  # same bytes, same settings
    assert len(requests) == 1


# ---------------------------------------------------------------- reber

def test_reber_source_is_generated_and_seeded(tmp_path):
    cfg = DataConfig(source="reber", num_samples=200)
    folder = prepare_corpus(cfg, root=tmp_path)
    sentences = all_sentences(folder)
    assert len(sentences) == 200 and all(is_embedded_reber(s) for s in sentences)
    assert set(load_prepared(folder).vocab.chars) == set("BEPSTVX")
    other = prepare_corpus(dataclasses.replace(cfg, split_seed=1), root=tmp_path)
    assert all_sentences(other) != sentences
    with pytest.raises(UsageError, match="generated"):
        prepare_corpus(dataclasses.replace(cfg, path="x.txt"), root=tmp_path)


# ---------------------------------------------------------------- the real corpora

@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("filename, pinned", [("speeches.txt", True), ("trump_full_speech.txt", False)])
def test_real_trump_files(filename, pinned, tmp_path):
    summary = prepare_with_summary(DataConfig(source="trump", path=str(SHARED / filename)), root=tmp_path)
    assert (summary.sha256 == summary.pinned_sha256) is pinned
    assert 80 <= summary.vocab_size <= 100 and summary.sentences["train"] > 10_000
    loaded = load_prepared(summary.folder)
    assert all(" " <= c <= "~" for c in loaded.vocab.chars)
    kinds = set(summary.cleaning.mapped)
    assert "typographic punctuation" in kinds
    assert ("cp1252 mojibake (C1 control)" in kinds) is (not pinned)
    total = sum(len(v) for v in loaded.splits.values())
    assert total == summary.stats.kept == sum(summary.sentences.values())
