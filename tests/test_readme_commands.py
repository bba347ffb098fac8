"""Every command block of README.md that can run offline runs, and does what the README says it does.

How commands are found: every fenced block (indented ones in lists too) is read line by line; a line is a
command when, after an optional `$ ` prompt, `.venv/bin/` and anything before a last `&&`, it starts with
`rnnkit `. A trailing `# comment` is dropped. In a block with `$ ` prompts the other lines are output.

What runs: the commands in README order, in one scratch folder (configs/ beside it, RNNKIT_DATA inside),
so the README's sequences work as written (train the quickstart, then `generate` the most recent run).
`train` gets a tiny budget (TINY_TRAIN). A command is skipped, with the reason shown by pytest, when:
- the line before its block is `<!-- readme-test: skip REASON -->` (a block opts out);
- it matches a rule of OFFLINE (real data in ../shared, a download, a GPU; tests/test_course.py runs the
  real-data commands), or is a synopsis with placeholders (`rnnkit train CONFIG [--set ...]`);
- its verb is not a command of this rnnkit (a README ahead of the code), or it needs an extra not installed;
- an earlier command of its block was skipped for a reason above: it would use what that one made.
Everything else must exit 0, and CLAIMS checks what the README says about the commands it names. A new
block needs nothing here to be run; add a claim when its prose promises something.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from rnnkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TINY_TRAIN = ["--set", "train.max_steps=20", "--set", "train.eval_every=20", "--set", "train.checkpoint_every=20",
              "--set", "train.device=cpu"]
OFFLINE = [  # (pattern in the command, why it cannot run offline here)
    (r"\.\./shared", "reads ../shared/data (tests/test_course.py runs the real-data commands)"),
    (r"trump", "needs the Trump speeches (a download, or ../shared/data)"),
    (r"metro(?!-synthetic)", "needs the Hangzhou metro files in ../shared/data"),
    (r"cuda", "needs a CUDA device"),
    (r"\[|\]|\.\.\.|\b[A-Z]{2,}\b", "a synopsis with placeholders, not a command"),
]
MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s+(.+?)\s*-->")


@dataclass
class Command:
    text: str  # as the README writes it, without prompt, venv path or comment
    block: int  # which block it is in
    marker: str | None  # the opt-out reason of its block


def blocks(text: str) -> list[tuple[str, list[str], str | None]]:
    """(language, lines, opt-out reason) of every fenced block, in order."""
    found, lines, previous = [], None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```") and lines is None:
            language, lines = stripped[3:].strip(), []
            marker = MARKER.search(previous)
        elif stripped.startswith("```"):
            found.append((language, lines, marker.group(1) if marker else None))
            lines = None
        elif lines is not None:
            lines.append(stripped)
        elif stripped:
            previous = stripped
    return found


def readme_commands(text: str) -> list[Command]:
    found = []
    for number, (language, lines, marker) in enumerate(blocks(text)):
        if language not in ("", "console", "shell", "bash", "sh"):
            continue
        if any(line.startswith("$ ") for line in lines):  # a prompt: the other lines are output
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        for line in lines:
            command = re.sub(r"\s+#.*$", "", line.split("&&")[-1]).strip()
            command = re.sub(r"^\S*/(?=rnnkit )", "", command)  # .venv/bin/rnnkit
            if command.startswith("rnnkit "):
                found.append(Command(command, number, marker))
    return found


COMMANDS = readme_commands(README)
VERBS = {command.name for command in typer.main.get_command(app).commands.values()}


def skip_reason(command: Command, skipped_in_block: str | None) -> str | None:
    if command.marker:
        return f"the README marks its block: {command.marker}"
    for pattern, reason in OFFLINE:
        if re.search(pattern, command.text):
            return reason
    verb = shlex.split(command.text)[1]
    if verb not in VERBS:
        return f"`rnnkit {verb}` is not a command of this rnnkit"
    if "--plot" in command.text and importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib (pip install -e '.[plot]')"
    if skipped_in_block:
        return f"uses what `{skipped_in_block}` (skipped) would have made"
    return None


def tiny(command: str) -> list[str]:
    args = shlex.split(command)[1:]
    return args + TINY_TRAIN if args[0] == "train" else args


@dataclass
class Ran:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    folder: Path


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> list[Ran | str]:
    """Run every command in README order: what each printed, or why it was skipped."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "configs").symlink_to(ROOT / "configs")
    results: list[Ran | str] = []
    skipped: dict[int, str] = {}  # block -> the first command skipped in it
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("RNNKIT_DATA", str(folder / "data"))
        patch.setenv("COLUMNS", "200")
        for command in COMMANDS:
            reason = skip_reason(command, skipped.get(command.block))
            if reason is not None:
                skipped.setdefault(command.block, command.text)
                results.append(reason)
                continue
            args = tiny(command.text)
            result = CliRunner().invoke(app, args)
            results.append(Ran(args, result.exit_code, result.stdout, result.stderr, folder))
    return results


# ---------------------------------------------------------------- what the README says about its commands


def reports(text: str) -> dict[str, dict]:
    """inspect-grads reports by label: cell, steps, and the layer's verdict, loss/far and x/step."""
    # \s+ where the title may wrap (at the table's width)
    header = r"^(.+?): (rnn|gru|lstm) \d+x\d+, loss at \w+, \d+\s+batch\(es\)\s+of\s+up\s+to\s+(\d+)\s+steps"
    found = {}
    for match in re.finditer(header, text, flags=re.MULTILINE):
        body = text[match.end():]
        layer = re.search(r"│ layer0 │ (\w+)\s+│ ([\d.e+-]+) │\s+([\d.]+) │", body)
        found[match.group(1).strip()] = {"cell": match.group(2), "steps": int(match.group(3)),
                                         "verdict": layer.group(1), "ratio": float(layer.group(2)),
                                         "factor": float(layer.group(3))}
    return found


def quickstart_trains(ran: Ran) -> None:
    """'The summary shows the best validation loss (bits per character) and penultimate acc, then three
    generated strings ... the run it left in runs/quickstart.'"""
    assert "best val bpc" in ran.stderr and "penultimate acc" in ran.stderr
    assert re.findall(r"^sample (\d+):", ran.stderr, flags=re.MULTILINE) == ["1", "2", "3"]
    assert (ran.folder / "runs" / "quickstart" / "best" / "model.safetensors").is_file()


def generates_from_the_latest_run(ran: Ran) -> None:
    """'the most recent run under runs/ by default': the quickstart, 3 beams."""
    assert "runs/quickstart: beam 5" in ran.stderr
    assert len(re.findall(r"^│ \d │", ran.stdout, flags=re.MULTILINE)) == 3


def evaluates_as_json(ran: Ran) -> None:
    """'metrics for shell scripts': one JSON object per line on stdout, nothing else."""
    record, = (json.loads(line) for line in ran.stdout.splitlines())
    assert record["run"] == "runs/quickstart" and record["split"] == "test" and record["bpc"] > 0


def inspects_the_latest_run(ran: Ran) -> None:
    assert list(reports(ran.stdout)) == ["quickstart"] and reports(ran.stdout)["quickstart"]["steps"] == 100


def compares_an_elman_rnn_with_an_lstm(ran: Ran) -> None:
    """'compares an Elman RNN with an LSTM ... labelled quickstart model.cell=rnn and quickstart model.cell=lstm'."""
    found = reports(ran.stdout)
    assert list(found) == ["quickstart model.cell=rnn", "quickstart model.cell=lstm"]
    rnn, lstm = found.values()
    assert (rnn["cell"], lstm["cell"]) == ("rnn", "lstm") and rnn["steps"] == lstm["steps"] == 150
    assert rnn["factor"] < 0.7 < 0.8 < lstm["factor"] and rnn["ratio"] > 1e10 * lstm["ratio"]  # two profiles
    assert "plot written to cmp.png" in ran.stderr and (ran.folder / "cmp.png").stat().st_size > 0


def lists_the_presets(ran: Ran) -> None:
    assert "quickstart" in ran.stdout


CLAIMS: dict[str, Callable[[Ran], None]] = {
    "rnnkit train configs/quickstart.yaml": quickstart_trains,
    "rnnkit generate --beam 5 --num 3": generates_from_the_latest_run,
    "rnnkit eval --split test --json": evaluates_as_json,
    "rnnkit inspect-grads --length 100": inspects_the_latest_run,
    "rnnkit inspect-grads configs/quickstart.yaml --compare model.cell=rnn,lstm --length 150 --plot cmp.png":
        compares_an_elman_rnn_with_an_lstm,
    "rnnkit configs": lists_the_presets,
}


def test_the_readme_has_the_commands_its_claims_are_about():
    texts = [command.text for command in COMMANDS]
    assert set(CLAIMS) <= set(texts), set(CLAIMS) - set(texts)
    assert "rnnkit prepare trump" in texts and len(texts) >= 10


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[c.text for c in COMMANDS])
def test_readme_command(ran, index):
    command, result = COMMANDS[index].text, ran[index]
    if isinstance(result, str):
        pytest.skip(result)
    assert result.exit_code == 0, f"{command}: {result.stdout}\n{result.stderr}"
    if command in CLAIMS:
        CLAIMS[command](result)


def test_the_hand_written_layers_example():
    """The `## The hand-written layers` block, with the x and lengths it leaves to the reader."""
    code = re.search(r"## The hand-written layers\n\n```python\n(.*?)```", README, flags=re.DOTALL).group(1)
    T, B = 7, 3
    scope = {"x": torch.randn(T, B, 8), "lengths": torch.tensor([7, 5, 2])}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["out"].shape == (T, B, 64) and scope["h_n"].shape == (4, B, 32)  # as its comments say
    assert isinstance(scope["ref"], torch.nn.LSTM) and scope["state"] is not None
