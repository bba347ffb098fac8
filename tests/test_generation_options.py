"""`rnnkit generate --stop` and `--prompt-file` through the real CLI on a tiny sentence model (Reber strings)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import train_run, working_folder
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.generation.generate import unescape

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 20, "eval_every": 10, "checkpoint_every": 10, "device": "cpu",
              "lr": 0.02},
    "generate": {"num": 8, "max_len": 40},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with working_folder(tmp_path_factory.mktemp("generate_options")) as root:
        yield train_run(root, TINY)


def _generate(run, *args):
    return CliRunner().invoke(app, ["generate", str(run), *map(str, args)])


def _records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


@pytest.mark.parametrize("mode", [[], ["--beam", "4", "--num", "4"], ["--beam", "4", "--num", "4", "--nucleus", "0.9"]])
def test_stop_ends_a_sample_at_the_first_occurrence_and_keeps_it(run, mode):
    stops = ("T", "PV")
    records = _records(_generate(run, "--json", "--seed", "3", "--stop", stops[0], "--stop", stops[1], *mode))
    assert any(r["stop"] for r in records)
    for r in records:
        text = r["text"]
        cut = min((text.find(s) + len(s) for s in stops if s in text), default=None)
        assert cut in (None, len(text))  # no stop string before the end
        assert r["stop"] == (next(s for s in stops if text.endswith(s)) if cut else None)
        assert r["finished"] or r["stop"] is None
        assert r["options"]["stop"] == list(stops)


def test_a_stopped_sample_is_the_free_sample_cut_at_the_stop_string(run):
    free = _records(_generate(run, "--json", "--seed", "5"))
    stopped = _records(_generate(run, "--json", "--seed", "5", "--stop", "T"))
    assert any(r["stop"] == "T" for r in stopped)
    for f, s in zip(free, stopped, strict=True):
        end = f["text"].find("T")
        assert s["text"] == (f["text"] if end < 0 else f["text"][:end + 1])


@pytest.mark.parametrize(("stop", "message"), [
    ("q", "--stop 'q': 'q' (U+0071) is not in the model's vocabulary"),
    ("\\n", "--stop '\\n': '\\n' (U+000A) is not in the model's vocabulary"),  # a sentence model ends with EOS
])
def test_a_stop_string_the_model_cannot_generate_is_refused(run, stop, message):
    result = _generate(run, "--stop", stop)
    assert result.exit_code == 2 and message in result.stderr


def test_stop_escapes():
    assert unescape(r"\n\n") == "\n\n" and unescape(r"a\tb\\n") == "a\tb\\n" and unescape("\\") == "\\"


def test_prompt_file_is_read_exactly(run, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("BTSS", encoding="utf-8")
    from_file = _records(_generate(run, "--json", "--prompt-file", path, "--seed", "2"))
    typed = _records(_generate(run, "--json", "--prompt", "BTSS", "--seed", "2"))
    assert [r["text"] for r in from_file] == [r["text"] for r in typed] and from_file[0]["prompt"] == "BTSS"


def test_prompt_file_errors(run, tmp_path):
    both = _generate(run, "--prompt", "B", "--prompt-file", tmp_path / "p.txt")
    assert both.exit_code == 2 and "give one of them" in both.stderr
    missing = _generate(run, "--prompt-file", tmp_path / "nope.txt")
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"BT\xfe")
    bad = _generate(run, "--prompt-file", binary)
    assert bad.exit_code == 1 and "not UTF-8 text (byte 0xfe at offset 2)" in bad.stderr


# --- stream models (data.mode: stream): no EOS, long samples across lines --------------------------------------

CODE = "".join(f"def f{i % 10}(x):\n    if x > {i % 7}:\n        return {i % 10}\n    return x\n\n" for i in range(300))
STREAM = {
    "task": "lm",
    "data": {"source": "text", "path": "code.py", "mode": "stream", "window": 40, "val_fraction": 0.1,
             "test_fraction": 0.05},
    "model": {"cell": "lstm", "hidden_size": 24, "embedding_dim": 8},
    "train": {"batch_size": 8, "max_steps": 120, "eval_every": 120, "checkpoint_every": 120, "device": "cpu",
              "lr": 0.03},
}


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate_stream")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNKIT_DATA", str(root / "data"))
    mp.chdir(root)
    (root / "code.py").write_text(CODE)
    (root / "stream.yaml").write_text(yaml.safe_dump(STREAM))
    result = CliRunner().invoke(app, ["train", "stream.yaml", "--quiet"])
    assert result.exit_code == 0, result.output
    yield root / "runs" / "stream"
    mp.undo()


def test_a_stream_model_generates_2000_characters_across_lines(stream_run):
    records = _records(_generate(stream_run, "--json", "--max-len", "2000", "--num", "2", "--temperature", "0.8"))
    for r in records:
        assert r["length"] == len(r["text"]) == 2000 and not r["finished"] and r["options"]["fixed_length"]
        assert r["text"].count("\n") > 50 and "\n    " in r["text"]  # lines and their indentation


@pytest.mark.parametrize("mode", [["--greedy"], ["--num", "3"], ["--beam", "3", "--num", "3"],
                                  ["--beam", "3", "--num", "3", "--nucleus", "0.9"]])
def test_every_decoder_works_on_a_stream_model(stream_run, mode):
    records = _records(_generate(stream_run, "--json", "--max-len", "150", "--seed", "1", *mode))
    assert records and all(r["length"] == 150 and not r["finished"] for r in records)
    assert all("\n" in r["text"] for r in records)


@pytest.mark.parametrize("mode", [["--num", "3"], ["--beam", "3", "--num", "3"]])
def test_stop_on_a_stream_model_ends_at_a_blank_line(stream_run, mode):
    records = _records(_generate(stream_run, "--json", "--max-len", "400", "--stop", "\\n\\n", *mode))
    for r in records:
        assert r["stop"] == "\n\n" and r["finished"] and r["text"].endswith("\n\n")
        assert "\n\n" not in r["text"][:-1]


def test_an_empty_prompt_starts_a_stream_model_after_a_newline(stream_run, tmp_path):
    result = _generate(stream_run, "--max-len", "30", "--greedy")
    assert result.exit_code == 0 and "starting after '\\n'" in result.stderr
    path = tmp_path / "prompt.py"
    path.write_text("def f3(x):\n    if x > 3:\n")
    [record] = _records(_generate(stream_run, "--json", "--prompt-file", path, "--greedy", "--max-len", "9"))
    assert record["prompt"] == path.read_text() and record["text"].startswith(" " * 8)  # the next line's indent


@pytest.mark.parametrize(("args", "message"), [
    (["--until-eos"], "--until-eos: a stream model has no EOS"),
    (["--min-len", "5"], "--min-len: 5 holds back EOS, which a stream model never generates"),
])
def test_eos_options_are_refused_for_a_stream_model(stream_run, args, message):
    result = _generate(stream_run, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_interactive_on_a_stream_model_continues_the_whole_text_read(stream_run):
    """Each line is read as typed (no newline added) after everything read and generated before it."""
    typed = "def f3(x):\n    if x > 3:\n\n"
    result = CliRunner().invoke(app, ["generate", str(stream_run), "--interactive", "--greedy", "--stop", "\\n",
                                      "--max-len", "60"], input=typed)
    assert result.exit_code == 0, result.output
    first, second, third = result.stdout.split("\n")[:3]
    read = "def f3(x):" + first + "\n" + "    if x > 3:" + second + "\n"  # each answer ended with its stop "\n"
    [record] = _records(_generate(stream_run, "--json", "--greedy", "--stop", "\\n", "--max-len", "60",
                                  "--prompt", read))
    assert third + "\n" == record["text"] and third.startswith(" " * 8)  # the body of the if
