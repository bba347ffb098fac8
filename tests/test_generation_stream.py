"""`rnnkit generate --stream` and `--interactive`, and the decoding options that follow Hugging Face
(--repetition-penalty on logits, --penalise-prompt, --early-stopping, the JSON score), through the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from test_generation import TINY, trained_run  # noqa: F401  (the module's tiny trained run)
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import load_config
from rnnkit.data.vocab import EOS, PAD
from rnnkit.generation.decoding import DecodeOptions
from rnnkit.generation.generate import generate
from rnnkit.runs.loaded import load


def _generate(run, *args, input=None):
    return CliRunner().invoke(app, ["generate", str(run), *map(str, args)], input=input)


def _records(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


# --- --stream ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [
    ["--greedy"], ["--seed", "3"], ["--seed", "4", "--top-k", "3", "--temperature", "1.5"], ["--beam", "4"],
    ["--beam", "3", "--nucleus", "0.9", "--seed", "2"], ["--seed", "5", "--stop", "SX"],
    ["--fixed-length", "--seed", "1"],
])
def test_stream_prints_what_generate_returns_for_the_same_seed(trained_run, mode):  # noqa: F811
    [record] = _records(_generate(trained_run, "--json", "--num", "1", "--prompt", "BT", *mode))
    result = _generate(trained_run, "--stream", "--prompt", "BT", *mode)
    assert result.exit_code == 0, result.output
    assert result.stdout == "BT" + record["text"] + "\n"
    assert len(record["text"]) > 2


def test_stream_calls_back_once_per_generated_character(trained_run):  # noqa: F811
    """The characters come one by one, as they are chosen, not as one string at the end."""
    run, pieces = load(trained_run, device="cpu"), []
    ids = run.vocab.encode("BT")
    [sample] = generate(run.model, run.vocab, ids, DecodeOptions(max_len=25), 3, run.device, on_text=pieces.append)
    assert pieces == list(sample.text) and len(pieces) > 2


@pytest.mark.parametrize(("args", "message"), [
    (["--num", "3"], "--num 3: --stream and --interactive show one sequence"),
    (["--json"], "--json and --stream: choose one"),
    (["--interactive"], "--stream and --interactive"),
])
def test_stream_refuses_what_it_cannot_show(trained_run, args, message):  # noqa: F811
    result = _generate(trained_run, "--stream", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_stream_takes_one_sequence_when_the_run_asks_for_three(trained_run):  # noqa: F811
    assert TINY["generate"]["num"] == 3
    result = _generate(trained_run, "--stream", "--seed", "1")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so that Python installs its KeyboardInterrupt handler. A test run
    started in the background by a non-interactive shell (`cmd &`) inherits SIGINT ignored, and so would the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_stream_with_exit_130_and_keeps_the_text(trained_run):  # noqa: F811
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "generate", str(trained_run), "--stream", "--prompt", "BT",
                             "--fixed-length", "--max-len", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=_default_sigint)
    try:
        shown = b""
        while len(shown) < 40:  # characters arrive while it runs: it has 100,000 to go
            shown += os.read(proc.stdout.fileno(), 64)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = (shown + rest).decode()
    assert proc.returncode == 130, err.decode()
    assert out.startswith("BT") and out.endswith("\n") and 40 <= len(out) < 100_000
    assert set(out.strip()) <= set("BTSXPVE") and "Traceback" not in err.decode() and "interrupted" in err.decode()


# --- --interactive -------------------------------------------------------------------------------------------

def _session(run, lines, *args):
    typed = "".join(f"{line}\n" for line in lines)
    result = _generate(run, "--interactive", "--greedy", "--max-len", "12", *args, input=typed)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines(), result.stderr


def _greedy(run, ids):
    """Greedy decoding after the model reads EOS + ids from a zero state (what `generate --prompt` does)."""
    loaded = load(run, device="cpu")
    return generate(loaded.model, loaded.vocab, ids, DecodeOptions(greedy=True, max_len=12), 0, loaded.device)[0]


def test_interactive_keeps_the_state_between_lines(trained_run):  # noqa: F811
    (first, second), _ = _session(trained_run, ["BT", "BTX"])
    (alone,), _ = _session(trained_run, ["BTX"])
    (other_first, other_second), _ = _session(trained_run, ["BPVV", "BTX"])
    assert second != alone and other_second != second  # the second line's answer depends on the first
    # What the second turn is: the model has read the first line, its answer, then the second line.
    vocab = load(trained_run, device="cpu").vocab
    assert first == alone == _greedy(trained_run, vocab.encode("BT")).text  # nothing ended with EOS here ...
    sample = _greedy(trained_run, vocab.encode("BT" + first + "BTX"))  # ... so no EOS between the lines
    assert second == sample.text


def test_interactive_reset_forgets_what_was_read(trained_run):  # noqa: F811
    (_, after_reset), err = _session(trained_run, ["BT", ":reset", "BTX"])
    (alone,), _ = _session(trained_run, ["BTX"])
    assert after_reset == alone and "reset" in err


def test_interactive_commands_change_the_options_and_mistakes_do_not_end_it(trained_run):  # noqa: F811
    lines = [":temperature 0.5", ":top-k 0", ":nucleus off", ":wobble 3", "BTq", ":help", ":greedy", "::BT", ""]
    out, err = _session(trained_run, lines, "--seed", "2")
    assert "temperature 0.5: sampling, T=0.5" in err
    assert "error: :top-k: 0 must be >= 1" in err and "error: :wobble: unknown command; :help lists them" in err
    assert "'q' (U+0071) at position 2 is not in the vocabulary" in err and ":reset" in err
    assert "greedy on: greedy" in err
    assert "':' (U+003A) at position 0" in err  # "::BT" is the text ":BT", and ':' is not in the vocabulary
    assert len(out) == 1  # only the empty line was answered: the model continued from a fresh start


def test_interactive_at_a_terminal_shows_a_prompt(trained_run):  # noqa: F811
    pty = pytest.importorskip("pty")
    expected = _greedy(trained_run, load(trained_run, device="cpu").vocab.encode("BT")).text
    pid, fd = pty.fork()
    if pid == 0:  # the child: rnnkit on the pseudo-terminal
        os.environ["OMP_NUM_THREADS"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "rnnkit", "generate", str(trained_run), "--interactive",
                                  "--greedy", "--max-len", "12"])
    screen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while marker not in screen and time.monotonic() < deadline:
            try:
                screen += os.read(fd, 1024)
            except OSError:
                break

    read_until(b"> ")
    os.write(fd, b"BT\n")  # the terminal echoes it
    read_until(f"{expected}\r\n> ".encode())
    os.write(fd, b"\x04")  # Ctrl-D: end of input
    read_until(b"\n", 5)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f"> BT\r\n{expected}\r\n> ".encode() in screen, screen


# --- Hugging Face's decoding rules through the command ----------------------------------------------------

def _hf_greedy(run, prompt: str, penalty: float, count_prompt: bool) -> str:
    """Greedy decoding with HF's repetition penalty, written out: the logits of every character seen so far
    (the prompt's too when count_prompt) divided by the penalty when positive, multiplied when negative."""
    loaded = load(run, device="cpu")
    model, vocab = loaded.model, loaded.vocab
    ids = vocab.encode(prompt)
    with torch.no_grad():
        _, state = model(torch.tensor([EOS] + ids[:-1]).unsqueeze(1))
        token, out = ids[-1], []
        for _ in range(25):
            logits, state = model.step_logits(torch.tensor([token]), state)
            logits = logits[0].clone()
            for seen in set(out) | (set(ids) if count_prompt else set()):
                logits[seen] = logits[seen] / penalty if logits[seen] > 0 else logits[seen] * penalty
            logits[PAD] = float("-inf")
            token = int(logits.argmax())
            if token == EOS:
                break
            out.append(token)
    return vocab.decode(out)


@pytest.mark.parametrize("count_prompt", [False, True])
def test_repetition_penalty_acts_on_the_logits_and_breaks_a_greedy_loop(trained_run, count_prompt):  # noqa: F811
    [plain] = _records(_generate(trained_run, "--json", "--greedy", "--prompt", "BT"))
    assert plain["text"] == "T" * 25  # the tiny model's greedy loop
    flag = ["--penalise-prompt"] if count_prompt else []
    [penalised] = _records(_generate(trained_run, "--json", "--greedy", "--prompt", "BT", "--repetition-penalty",
                                     "1.3", *flag))
    assert penalised["text"] != plain["text"] and penalised["options"]["penalise_prompt"] == count_prompt
    assert penalised["text"] == _hf_greedy(trained_run, "BT", 1.3, count_prompt)


def test_json_gives_the_score_beam_search_ranks_by(trained_run):  # noqa: F811
    beams = _records(_generate(trained_run, "--json", "--beam", "4", "--num", "4", "--max-len", "6",
                               "--length-penalty", "2"))
    for r in beams:
        length = r["length"] + int(r["finished"] and r["stop"] is None)  # EOS counts
        assert r["score"] == pytest.approx(r["log_prob"] / length ** 2, abs=1e-5)
    assert [r["score"] for r in beams] == sorted((r["score"] for r in beams), reverse=True)
    [greedy] = _records(_generate(trained_run, "--json", "--greedy"))
    assert greedy["score"] == greedy["log_prob"]


def test_early_stopping_true_stops_at_the_first_beam_finished_hypotheses(trained_run):  # noqa: F811
    args = ["--json", "--beam", "3", "--num", "3", "--max-len", "12", "--prompt", "BT"]
    never = _records(_generate(trained_run, *args))
    early = _records(_generate(trained_run, *args, "--early-stopping", "true"))
    assert [r["options"]["early_stopping"] for r in never + early] == ["never"] * 3 + ["true"] * 3
    assert early[0]["score"] <= never[0]["score"] + 1e-9


@pytest.mark.parametrize(("args", "message"), [
    (["--beam", "3", "--early-stopping", "maybe"], "--early-stopping: 'maybe' is not one of never, true, false"),
    (["--early-stopping", "true"], "--early-stopping only applies to beam search"),
])
def test_early_stopping_errors(trained_run, args, message):  # noqa: F811
    result = _generate(trained_run, *args)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_greedy_sets_aside_the_runs_beam_only_options(tmp_path):
    from rnnkit.config import GenerateConfig
    from rnnkit.generation.options import merge_options

    used = merge_options(GenerateConfig(beam=4, length_penalty=2.0, early_stopping="false"), {"greedy": True})
    assert (used.beam, used.length_penalty, used.early_stopping) == (1, 1.0, "never")


def test_yaml_booleans_are_early_stopping_words(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"generate": {"early_stopping": True, "beam": 3, "penalise_prompt": True}}))
    cfg = load_config(path)
    assert cfg.generate.early_stopping == "true" and cfg.generate.penalise_prompt is True
    path.write_text(yaml.safe_dump({"generate": {"early_stopping": "sometimes"}}))
    with pytest.raises(Exception, match="generate.early_stopping: 'sometimes' is not one of never, true, false"):
        load_config(path)
