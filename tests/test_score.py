"""`rnnkit score` through the real CLI: per-file JSON, standard input, per-character surprisal, unknown characters,
chunked reading, and agreement with `rnnkit eval` (tiny runs, fixed seeds)."""

from __future__ import annotations

import json
import math

import pytest
from conftest import train_run, working_folder
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.evaluation.score import read_pieces, score_text, split_text
from rnnkit.runs.loaded import load

WINDOW = 12
TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 200, "max_len": 30},
    "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 20, "eval_every": 10, "checkpoint_every": 10, "device": "cpu",
              "lr": 0.02},
}
TEXT = "BTSSXXTVVEPE\nBPVVETE\nBTXSE\n"  # Reber strings, one per line
CODE = "".join(f"def f{i % 10}(x):\n    if x > {i % 7}:\n        return {i % 10}\n    return x\n\n" for i in range(300))
STREAM = {
    "task": "lm",
    "data": {"source": "text", "path": "code.py", "mode": "stream", "window": 40, "val_fraction": 0.1,
             "test_fraction": 0.05},
    "model": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 8},
    "train": {"batch_size": 8, "max_steps": 40, "eval_every": 20, "checkpoint_every": 20, "device": "cpu",
              "lr": 0.03},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/sentences and runs/windows (data.window 12), trained for 20 steps on the Reber grammar, and
    runs/stream, 40 steps on indented code (data.mode: stream)."""
    windows = {**TINY, "data": {**TINY["data"], "mode": "windows", "window": WINDOW}}
    with working_folder(tmp_path_factory.mktemp("score")) as root:
        (root / "code.py").write_text(CODE)
        for name, config in (("sentences", TINY), ("windows", windows), ("stream", STREAM)):
            train_run(root, config, name)
        yield root


def _score(*args, input=None):
    return CliRunner().invoke(app, ["score", *map(str, args)], input=input)


def _records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def _file(root, name: str, text: str):
    path = root / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_json_prints_one_object_per_file_with_consistent_figures(runs):
    first, second = _file(runs, "a.txt", TEXT), _file(runs, "b.txt", "BPBTXSEPE\n")
    records = _records(_score("runs/sentences", first, second, "--json"))
    assert [r["file"] for r in records] == [str(first), str(second)]
    for record, text in zip(records, (TEXT, "BPBTXSEPE\n"), strict=True):
        assert record["characters"] == len(text)  # sentences: every character, each newline scored as EOS
        assert record["bpc"] == pytest.approx(record["bits"] / record["characters"], rel=1e-12)
        assert record["perplexity"] == pytest.approx(2 ** record["bpc"], rel=1e-9)
        assert record["loss"] == pytest.approx(record["bpc"] * math.log(2), rel=1e-12)
        assert record["run"] == "runs/sentences" and record["mode"] == "sentences" and "per_char" not in record
    assert records[0]["bpc"] != records[1]["bpc"]


def test_standard_input_is_scored_like_the_file(runs):
    path = _file(runs, "a.txt", TEXT)
    from_file = _records(_score("runs/windows", path, "--json"))[0]
    for args in (["-"], []):
        from_stdin = _records(_score("runs/windows", *args, "--json", input=TEXT))[0]
        assert from_stdin["file"] == "-" and from_stdin["bits"] == pytest.approx(from_file["bits"], rel=1e-12)
        assert from_stdin["characters"] == len(TEXT) - 1  # windows: the first character is only read


@pytest.mark.parametrize("run", ["sentences", "windows", "stream"])
def test_per_char_covers_the_text_and_sums_to_the_total(runs, run):
    text = CODE[:300] if run == "stream" else TEXT
    record = _records(_score(f"runs/{run}", "--json", "--per-char", input=text))[0]
    chars = [c for c, _ in record["per_char"]]
    bits = [b for _, b in record["per_char"]]
    assert "".join(chars) == text
    assert (bits[0] is None) == (run != "sentences") and all(b is not None and b >= 0 for b in bits[1:])
    assert sum(b for b in bits if b is not None) == pytest.approx(record["bits"], rel=1e-9)
    assert sum(b is not None for b in bits) == record["characters"]


def test_per_char_table_output_lists_every_character(runs):
    result = _score("runs/sentences", "--per-char", input="BT\n")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert [(offset, char) for offset, char, _ in lines] == [("0", "'B'"), ("1", "'T'"), ("2", "'\\n'")]
    assert "bpc" in result.stdout


def test_unknown_characters_are_one_line_naming_each_and_where(runs):
    path = _file(runs, "bad.txt", "BTqB\nBzzq\n")
    result = _score("runs/sentences", path, "--json")
    assert result.exit_code == 2 and result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "2 character(s) not in the model's vocabulary" in message
    assert "'q' (U+0071) at position 2 (line 1, column 3) and 1 more time(s)" in message
    assert "'z' (U+007A) at position 6 (line 2, column 2) and 1 more time(s)" in message
    assert "--replace-unknown" in message


def test_replace_unknown_scores_them_as_the_character_given(runs):
    replaced = _records(_score("runs/sentences", "--json", "--replace-unknown", "B", input="BTqB\nBzzq\n"))
    plain = _records(_score("runs/sentences", "--json", input="BTBB\nBBBB\n"))
    assert replaced[0]["replaced"] == 4 and replaced[0]["bits"] == pytest.approx(plain[0]["bits"], rel=1e-12)
    bad = _score("runs/sentences", "--replace-unknown", "q", input="BT\n")
    assert bad.exit_code == 2 and "--replace-unknown: 'q' must be one character" in bad.stderr


@pytest.mark.parametrize("run", ["sentences", "windows", "stream"])
def test_chunked_scoring_equals_unchunked(runs, run):
    # A long line (longer than the smallest chunks) between short ones exercises the carried-state path too.
    text = CODE[:2000] if run == "stream" else TEXT * 20 + "BT" + "SSSSX" * 30 + "SE\n" + TEXT * 5 + "BTSX"
    path = _file(runs, "long.txt", text)
    whole = _records(_score(f"runs/{run}", path, "--json"))[0]
    for chunk in (1, 7, 64):
        chunked = _records(_score(f"runs/{run}", path, "--json", "--chunk-chars", chunk))[0]
        assert chunked["characters"] == whole["characters"]
        assert chunked["bits"] == pytest.approx(whole["bits"], rel=1e-6)


def test_reading_keeps_characters_split_between_reads_whole():
    import io

    text = "é…\nab€\n" * 3
    assert "".join(read_pieces(io.BytesIO(text.encode()), "x", size=3)) == text


def test_a_file_larger_than_a_read_is_scored_whole(runs):
    text = TEXT * 3000  # 84 KB: two reads
    record = _records(_score("runs/sentences", _file(runs, "big.txt", text), "--json"))[0]
    assert record["characters"] == len(text)
    api = load("runs/sentences", device="cpu").score(text)
    assert api.bits == pytest.approx(record["bits"], rel=1e-9) and api.characters == len(text)


def test_score_of_the_validation_text_equals_eval(runs):
    run = load("runs/sentences", device="cpu")
    path = _file(runs, "val.txt", split_text(run, "val"))
    evaluated = json.loads(CliRunner().invoke(app, ["eval", "runs/sentences", "--json"]).stdout)
    scored = _records(_score("runs/sentences", path, "--json"))[0]
    assert scored["characters"] == evaluated["characters"]
    assert abs(scored["bpc"] - evaluated["bpc"]) < 1e-5


def test_stream_score_of_the_validation_text_equals_eval(runs):
    run = load("runs/stream", device="cpu")
    text = split_text(run, "val")
    assert "\n    " in text  # the layout is in the text scored
    evaluated = json.loads(CliRunner().invoke(app, ["eval", "runs/stream", "--json"]).stdout)
    scored = _records(_score("runs/stream", _file(runs, "stream_val.txt", text), "--json"))[0]
    assert scored["characters"] == evaluated["characters"] == len(text) - 1  # the first is only read
    assert abs(scored["bpc"] - evaluated["bpc"]) < 1e-3


def test_stream_unknown_characters_include_a_tab(runs):
    result = _score("runs/stream", "--json", input="def f(x):\n\treturn x\n")
    assert result.exit_code == 2 and "'\\t' (U+0009) at position 10 (line 2, column 1)" in result.stderr


def test_windows_score_equals_eval_on_the_windows_eval_covers(runs):
    run = load("runs/windows", device="cpu")
    text = split_text(run, "val")
    covered = text[:1 + (len(text) - 1) // WINDOW * WINDOW]  # eval drops the last, shorter window
    evaluated = json.loads(CliRunner().invoke(app, ["eval", "runs/windows", "--json"]).stdout)
    scored = _records(_score("runs/windows", "--json", input=covered))[0]
    assert scored["characters"] == evaluated["characters"]
    assert abs(scored["bpc"] - evaluated["bpc"]) < 1e-5
    whole = _records(_score("runs/windows", "--json", input=text))[0]
    assert whole["characters"] == len(text) - 1


@pytest.mark.parametrize(("content", "code", "message"), [
    (b"BT\xffSE\n", 1, "not UTF-8 text (byte 0xff at offset 2)"),
    (b"", 2, "no character to score"),
])
def test_bad_files_are_one_clear_line(runs, content, code, message):
    path = runs / "bad.bin"
    path.write_bytes(content)
    result = _score("runs/sentences", path)
    assert result.exit_code == code and message in result.stderr and result.stdout == ""


def test_missing_file_and_folder(runs):
    assert "no such file" in _score("runs/sentences", runs / "nope.txt").stderr
    folder = _score("runs/sentences", runs)
    assert folder.exit_code == 1 and "is a folder" in folder.stderr


@pytest.mark.parametrize(("run", "text"), [("stream", CODE[:300]), ("sentences", TEXT)])
def test_clean_scores_the_text_as_the_runs_data_was_cleaned(runs, run, text):
    windows_text = text.replace("\n", "\r\n")  # CRLF line ends: prepare writes them as LF
    raw = _score(f"runs/{run}", "--json", input=windows_text)
    assert raw.exit_code == 2 and "'\\r' (U+000D)" in raw.stderr and "--clean" in raw.stderr
    result = _score(f"runs/{run}", "--json", "--clean", input=windows_text)
    cleaned, plain = _records(result)[0], _records(_score(f"runs/{run}", "--json", input=text))[0]
    assert cleaned["bits"] == pytest.approx(plain["bits"], rel=1e-9) and cleaned["characters"] == plain["characters"]
    assert cleaned["cleaning"]["mapped"] and "cleaned as the run's data" in result.stderr


@pytest.mark.parametrize("run", ["sentences", "windows", "stream"])
def test_no_model_call_reads_more_than_a_chunk(runs, run, monkeypatch):
    loaded = load(f"runs/{run}", device="cpu")
    text = CODE[:3000] if run == "stream" else TEXT * 40 + "BT" + "SSSSX" * 60 + "SE\n"
    sizes, forward = [], loaded.model.forward
    monkeypatch.setattr(loaded.model, "forward", lambda tokens, *a, **k: sizes.append(tokens.numel()) or forward(
        tokens, *a, **k))
    expected = loaded.score(text)
    for chunk in (50, 400):
        sizes.clear()
        assert score_text(loaded, text, chunk_chars=chunk).bits == pytest.approx(expected.bits, rel=1e-6)
        assert sizes and max(sizes) <= max(chunk, WINDOW)  # memory is bounded by the chunk, whatever the text
