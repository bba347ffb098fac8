"""docs/course.md cannot rot: every `$ rnnkit ...` command of the walkthrough runs, on small settings.

The walkthrough's commands are run in order (later ones use the runs earlier ones trained) through the
real CLI, with the training budget cut to a few steps and generation counts cut to a few samples. They
read the shared data sets, so the test is a real-data test that skips when ../shared is absent.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WALKTHROUGH = ROOT / "docs" / "course.md"

# What "small settings" means for each verb: options appended, and numeric options capped.
SMALL_TRAIN = ["--set", "train.max_steps=3", "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3",
               "--set", "train.eval_batches=1", "--set", "train.histogram_every=3", "--set", "train.log_every=1",
               "--set", "train.device=cpu", "--quiet"]
CAPS = {"--generate": 2, "--references": 5, "--max-len": 30, "--num": 2, "--batches": 1, "--length": 40}


def walkthrough_commands(text: str) -> list[str]:
    """The `$ rnnkit ...` lines of the document's console blocks, in order."""
    return [match.group(1) for match in re.finditer(r"^\$ (rnnkit .+)$", text, flags=re.MULTILINE)]


def small(command: str) -> list[str]:
    """The command's arguments with a small budget."""
    args = shlex.split(command)[1:]
    for index, arg in enumerate(args[:-1]):
        if arg in CAPS and args[index + 1].isdigit():
            args[index + 1] = str(min(int(args[index + 1]), CAPS[arg]))
    if args[0] == "train":
        args += SMALL_TRAIN
    if "--plot" in args:  # keep the picture out of the document's folder
        args[args.index("--plot") + 1] = "plot.png"
    return args


def test_the_walkthrough_has_commands():
    assert len(walkthrough_commands(WALKTHROUGH.read_text(encoding="utf-8"))) >= 15


@pytest.mark.realdata
def test_every_walkthrough_command_runs(tmp_path, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    # a checkout with ../shared beside it, as the page assumes: the configs name ../shared/data/... too
    checkout = tmp_path / "rnnkit"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    (checkout / "configs").symlink_to(ROOT / "configs")
    (checkout / "tests").symlink_to(ROOT / "tests")  # configs/langid.yaml reads the sample files there
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    runner = CliRunner()
    for command in walkthrough_commands(WALKTHROUGH.read_text(encoding="utf-8")):
        result = runner.invoke(app, small(command))
        assert result.exit_code == 0, f"{command}\n{result.output}"
